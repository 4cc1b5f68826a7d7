-- outcall's database schema, applied at start-up.
--
-- Each `-- step N` block is one migration. PRAGMA user_version records the last applied step, and a
-- block is applied once, in its own transaction. An applied step is never edited: a change to the
-- schema is a new step appended at the end.
--
-- Times are unix seconds (UTC) and are shown in the configured time zone by the API; NULL is unset.

-- step 1
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- A login token is kept only as its SHA-256, so a copy of the database hands out no session.
CREATE TABLE sessions (
    token_sha256 TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE tasks (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name                 TEXT    NOT NULL,
    description                TEXT    NOT NULL DEFAULT '',
    status                     TEXT    NOT NULL DEFAULT 'init'
                                   CHECK (status IN ('init', 'running', 'stop', 'done')),
    cid_number                 TEXT    NOT NULL DEFAULT '',
    cid_name                   TEXT    NOT NULL DEFAULT '',
    context                    TEXT    NOT NULL DEFAULT 'context-1',
    dest_context               TEXT    NOT NULL DEFAULT '',
    calling_time               INTEGER NOT NULL DEFAULT 30,
    max_caps                   REAL    NOT NULL DEFAULT 1 CHECK (max_caps > 0),
    max_concurrency            INTEGER NOT NULL DEFAULT 1 CHECK (max_concurrency > 0),
    task_start_time            INTEGER,
    task_end_time              INTEGER,
    auto_dial                  INTEGER NOT NULL DEFAULT 0,
    -- 1 while an auto_dial start at task_start_time is still to happen; cleared when it fires,
    -- on any manual start or stop, and recomputed whenever auto_dial or task_start_time change.
    auto_dial_pending          INTEGER NOT NULL DEFAULT 0,
    disable_ring_back          INTEGER NOT NULL DEFAULT 1,
    auto_record                INTEGER NOT NULL DEFAULT 0,
    group_confirm_key          TEXT    NOT NULL DEFAULT '',
    group_confirm_read_timeout INTEGER,
    group_confirm_file         TEXT    NOT NULL DEFAULT '',
    action                     TEXT    NOT NULL DEFAULT '',
    data                       TEXT    NOT NULL DEFAULT '',
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    deleted_at                 INTEGER
);
-- A name is unique among live tasks only: a deleted task's name may be reused.
CREATE UNIQUE INDEX tasks_live_name ON tasks (group_name) WHERE deleted_at IS NULL;
CREATE INDEX tasks_live_status ON tasks (status, id) WHERE deleted_at IS NULL;
-- The scheduler looks for tasks that start by themselves.
CREATE INDEX tasks_auto_dial ON tasks (task_start_time) WHERE auto_dial_pending = 1 AND deleted_at IS NULL;

CREATE TABLE numbers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id         INTEGER NOT NULL REFERENCES tasks (id),
    dest_number      TEXT    NOT NULL,
    external_id      TEXT    NOT NULL DEFAULT '',
    uuid             TEXT    NOT NULL DEFAULT '',
    call_status      TEXT    NOT NULL DEFAULT 'init'
                         CHECK (call_status IN ('init', 'calling', 'done', 'stop')),
    -- The vendor's inverted flag: 1 never dialed, 0 dialed at least once.
    outbound_call    INTEGER NOT NULL DEFAULT 1,
    dtmf             TEXT    NOT NULL DEFAULT '',
    cause            TEXT    NOT NULL DEFAULT '',
    -- The SIP final response code behind `cause`, when the back end had one.
    sip_code         INTEGER,
    call_start_time  INTEGER,
    call_answer_time INTEGER,
    call_end_time    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    deleted_at       INTEGER
);
-- Paging a task's numbers, and the dialer's "next waiting number in id order" / per-status counts.
CREATE INDEX numbers_by_task ON numbers (group_id, id);
CREATE INDEX numbers_by_task_status ON numbers (group_id, call_status, id);

-- step 2
-- Prompts uploaded for playback and confirm, stored as 8 kHz mono 16-bit WAV under <data-dir>/media.
CREATE TABLE media_files (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    media_type  TEXT    NOT NULL DEFAULT 'UPLOAD',
    bytes       INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE INDEX media_files_live ON media_files (id) WHERE deleted_at IS NULL;
-- Where the recording of a number's call was written (auto_record), '' when none.
ALTER TABLE numbers ADD COLUMN record_path TEXT NOT NULL DEFAULT '';

-- step 3
-- What a user may do: `admin` everything, `readonly` only reads (and change their own password).
-- Users from before roles existed were all administrators.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'readonly'));

-- step 4
-- Per-task counters of its live numbers, kept by the triggers below in the same transaction as
-- every change of a number, so that a task's progress is read without scanning its numbers:
-- counts by call_status, the total, the answered (call_answer_time set), and, in
-- task_cause_counts, the numbers per hangup cause. `updated_at` is the last number change seen.
CREATE TABLE task_counts (
    group_id   INTEGER PRIMARY KEY,
    total      INTEGER NOT NULL DEFAULT 0,
    init       INTEGER NOT NULL DEFAULT 0,
    calling    INTEGER NOT NULL DEFAULT 0,
    done       INTEGER NOT NULL DEFAULT 0,
    stop       INTEGER NOT NULL DEFAULT 0,
    answered   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE task_cause_counts (
    group_id INTEGER NOT NULL,
    cause    TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (group_id, cause)
) WITHOUT ROWID;

INSERT INTO task_counts (group_id, total, init, calling, done, stop, answered, updated_at)
SELECT t.id,
       count(n.id),
       count(CASE WHEN n.call_status = 'init' THEN 1 END),
       count(CASE WHEN n.call_status = 'calling' THEN 1 END),
       count(CASE WHEN n.call_status = 'done' THEN 1 END),
       count(CASE WHEN n.call_status = 'stop' THEN 1 END),
       count(n.call_answer_time),
       coalesce(max(n.updated_at), 0)
FROM tasks t LEFT JOIN numbers n ON n.group_id = t.id AND n.deleted_at IS NULL
GROUP BY t.id;
INSERT INTO task_cause_counts (group_id, cause, count)
SELECT group_id, cause, count(*) FROM numbers
WHERE cause <> '' AND deleted_at IS NULL
GROUP BY group_id, cause;

CREATE TRIGGER task_counts_new_task AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_counts (group_id) VALUES (NEW.id);
END;

-- A number counts while it is live (deleted_at NULL). Each trigger's WHEN skips the changes that
-- move no counter, and the causes have a trigger of their own. Numbers are added in bulk (import,
-- clone), and a trigger on INSERT would cost a statement journal per row (an import three times
-- slower): their writer counts them instead, once per batch (`db::stats::count_added_numbers`).
CREATE TRIGGER task_counts_number_removed AFTER DELETE ON numbers WHEN OLD.deleted_at IS NULL
BEGIN
    UPDATE task_counts SET
        total = total - 1,
        init = init - (OLD.call_status = 'init'),
        calling = calling - (OLD.call_status = 'calling'),
        done = done - (OLD.call_status = 'done'),
        stop = stop - (OLD.call_status = 'stop'),
        answered = answered - (OLD.call_answer_time IS NOT NULL)
    WHERE group_id = OLD.group_id;
    UPDATE task_cause_counts SET count = count - 1
    WHERE OLD.cause <> '' AND group_id = OLD.group_id AND cause = OLD.cause;
END;

-- The old row is taken out of the counts, the new one put in.
CREATE TRIGGER task_counts_number_changed
AFTER UPDATE OF group_id, call_status, call_answer_time, deleted_at ON numbers
WHEN OLD.group_id IS NOT NEW.group_id
  OR OLD.call_status IS NOT NEW.call_status
  OR (OLD.call_answer_time IS NULL) IS NOT (NEW.call_answer_time IS NULL)
  OR (OLD.deleted_at IS NULL) IS NOT (NEW.deleted_at IS NULL)
BEGIN
    UPDATE task_counts SET
        total = total - 1,
        init = init - (OLD.call_status = 'init'),
        calling = calling - (OLD.call_status = 'calling'),
        done = done - (OLD.call_status = 'done'),
        stop = stop - (OLD.call_status = 'stop'),
        answered = answered - (OLD.call_answer_time IS NOT NULL)
    WHERE OLD.deleted_at IS NULL AND group_id = OLD.group_id;
    UPDATE task_counts SET
        total = total + 1,
        init = init + (NEW.call_status = 'init'),
        calling = calling + (NEW.call_status = 'calling'),
        done = done + (NEW.call_status = 'done'),
        stop = stop + (NEW.call_status = 'stop'),
        answered = answered + (NEW.call_answer_time IS NOT NULL),
        updated_at = max(updated_at, NEW.updated_at)
    WHERE NEW.deleted_at IS NULL AND group_id = NEW.group_id;
END;

CREATE TRIGGER task_cause_counts_number_changed
AFTER UPDATE OF group_id, cause, deleted_at ON numbers
WHEN OLD.group_id IS NOT NEW.group_id
  OR OLD.cause IS NOT NEW.cause
  OR (OLD.deleted_at IS NULL) IS NOT (NEW.deleted_at IS NULL)
BEGIN
    UPDATE task_cause_counts SET count = count - 1
    WHERE OLD.cause <> '' AND OLD.deleted_at IS NULL AND group_id = OLD.group_id AND cause = OLD.cause;
    INSERT INTO task_cause_counts (group_id, cause, count)
    SELECT NEW.group_id, NEW.cause, 1 WHERE NEW.cause <> '' AND NEW.deleted_at IS NULL
    ON CONFLICT (group_id, cause) DO UPDATE SET count = count + 1;
    UPDATE task_counts SET updated_at = max(updated_at, NEW.updated_at)
    WHERE NEW.deleted_at IS NULL AND group_id = NEW.group_id;
END;

-- step 5
-- `seq`: a live number's place in its task, 1..N in id order, dense because a task's numbers are
-- only ever appended (import, clone) and never deleted one by one. A page of the unfiltered list
-- is then a range of `seq`, not an OFFSET scan. Every writer that inserts numbers gives them the
-- next values after the task's max(seq) (`db::numbers`, `db::tasks::clone`); rows without one
-- (deleted ones) are paged the slow way.
ALTER TABLE numbers ADD COLUMN seq INTEGER;
WITH ordered AS (
    SELECT id, row_number() OVER (PARTITION BY group_id ORDER BY id) AS seq
    FROM numbers WHERE deleted_at IS NULL
)
UPDATE numbers SET seq = ordered.seq FROM ordered WHERE numbers.id = ordered.id;
-- (group_id, seq) replaces (group_id, id): the same rows in the same order, plus the range.
DROP INDEX numbers_by_task;
CREATE UNIQUE INDEX numbers_by_task_seq ON numbers (group_id, seq);
-- The filtered lists: only live numbers are listed, claimed or counted. A number gets a cause only
-- when its call ends, so the cause index costs an import nothing.
DROP INDEX numbers_by_task_status;
CREATE INDEX numbers_by_task_status ON numbers (group_id, call_status, id) WHERE deleted_at IS NULL;
CREATE INDEX numbers_by_task_cause ON numbers (group_id, cause, id) WHERE deleted_at IS NULL AND cause <> '';
CREATE INDEX numbers_by_task_dest ON numbers (group_id, dest_number) WHERE deleted_at IS NULL;

-- step 6
-- Bucket counts: per task, the live numbers of each call_status, and of each cause and
-- call_status, in every bucket of 4,096 ids (bucket = id >> 12). A filtered page sums them to
-- find the bucket that holds its first row and reads from there along the filter's index
-- (group_id, call_status or cause, id),
-- skipping fewer than 4,096 index entries, where an OFFSET from the end of the list skipped up to
-- half of the task. Ids, not seq, because the filter indexes are in id order (no new index) and
-- every row has one. Kept by the triggers below in the transaction of every change, like
-- task_counts; inserted numbers are counted by their writer, once per batch
-- (`db::stats::count_added_numbers`).
CREATE TABLE task_status_buckets (
    group_id    INTEGER NOT NULL,
    call_status TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (group_id, call_status, bucket)
) WITHOUT ROWID;
CREATE TABLE task_cause_buckets (
    group_id    INTEGER NOT NULL,
    cause       TEXT    NOT NULL,
    call_status TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (group_id, cause, call_status, bucket)
) WITHOUT ROWID;

INSERT INTO task_status_buckets (group_id, call_status, bucket, count)
SELECT group_id, call_status, id >> 12, count(*) FROM numbers
WHERE deleted_at IS NULL
GROUP BY group_id, call_status, id >> 12;
INSERT INTO task_cause_buckets (group_id, cause, call_status, bucket, count)
SELECT group_id, cause, call_status, id >> 12, count(*) FROM numbers
WHERE deleted_at IS NULL AND cause <> ''
GROUP BY group_id, cause, call_status, id >> 12;

CREATE TRIGGER task_buckets_number_removed AFTER DELETE ON numbers WHEN OLD.deleted_at IS NULL
BEGIN
    UPDATE task_status_buckets SET count = count - 1
    WHERE group_id = OLD.group_id AND call_status = OLD.call_status AND bucket = OLD.id >> 12;
    UPDATE task_cause_buckets SET count = count - 1
    WHERE OLD.cause <> '' AND group_id = OLD.group_id AND cause = OLD.cause
      AND call_status = OLD.call_status AND bucket = OLD.id >> 12;
END;

CREATE TRIGGER task_status_buckets_number_changed
AFTER UPDATE OF id, group_id, call_status, deleted_at ON numbers
WHEN OLD.id IS NOT NEW.id
  OR OLD.group_id IS NOT NEW.group_id
  OR OLD.call_status IS NOT NEW.call_status
  OR (OLD.deleted_at IS NULL) IS NOT (NEW.deleted_at IS NULL)
BEGIN
    UPDATE task_status_buckets SET count = count - 1
    WHERE OLD.deleted_at IS NULL AND group_id = OLD.group_id AND call_status = OLD.call_status
      AND bucket = OLD.id >> 12;
    INSERT INTO task_status_buckets (group_id, call_status, bucket, count)
    SELECT NEW.group_id, NEW.call_status, NEW.id >> 12, 1 WHERE NEW.deleted_at IS NULL
    ON CONFLICT (group_id, call_status, bucket) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER task_cause_buckets_number_changed
AFTER UPDATE OF id, group_id, cause, call_status, deleted_at ON numbers
WHEN (OLD.cause <> '' OR NEW.cause <> '') AND (
     OLD.id IS NOT NEW.id
  OR OLD.group_id IS NOT NEW.group_id
  OR OLD.cause IS NOT NEW.cause
  OR OLD.call_status IS NOT NEW.call_status
  OR (OLD.deleted_at IS NULL) IS NOT (NEW.deleted_at IS NULL))
BEGIN
    UPDATE task_cause_buckets SET count = count - 1
    WHERE OLD.cause <> '' AND OLD.deleted_at IS NULL AND group_id = OLD.group_id
      AND cause = OLD.cause AND call_status = OLD.call_status AND bucket = OLD.id >> 12;
    INSERT INTO task_cause_buckets (group_id, cause, call_status, bucket, count)
    SELECT NEW.group_id, NEW.cause, NEW.call_status, NEW.id >> 12, 1
    WHERE NEW.cause <> '' AND NEW.deleted_at IS NULL
    ON CONFLICT (group_id, cause, call_status, bucket) DO UPDATE SET count = count + 1;
END;

-- step 7
-- Issue 11: retries by outcome, calling windows, do-not-call, result webhooks.
--
-- Task settings beyond the vendor's (every default is XSwitch's behaviour):
-- max_attempts: calls per number in all (1: no retry); retry_interval: least wait, seconds,
-- between a call with a retried cause and the next; retry_causes: the causes retried,
-- comma-separated; call_windows: '' (any time) or `HH:MM-HH:MM,…` (a window ending before it
-- starts runs across midnight and belongs to the day it starts); call_weekdays: '' (every day) or
-- ISO days `1`…`7`, as `1,2,3` and ranges `1-5`; time_zone: IANA name of the windows' zone, ''
-- for the server's (--tz); webhook_url: '' (none) or the http(s) URL each finished attempt is
-- POSTed to.
ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN retry_interval INTEGER NOT NULL DEFAULT 300;
ALTER TABLE tasks ADD COLUMN retry_causes TEXT NOT NULL
    DEFAULT 'USER_BUSY,NO_ANSWER,NO_USER_RESPONSE,NORMAL_TEMPORARY_FAILURE,NORMAL_CIRCUIT_CONGESTION,RECOVERY_ON_TIMER_EXPIRE';
ALTER TABLE tasks ADD COLUMN call_windows TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN call_weekdays TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';

-- A number's calls: `attempts` placed so far; `next_attempt_at`, while it waits (call_status
-- `init`, or `stop` while its task is stopped) for a retry or for the per-day cap, the earliest
-- time it may be dialed again (NULL: not held back). A stop and a restart keep it, so a restart
-- never shortens the wait.
ALTER TABLE numbers ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE numbers ADD COLUMN next_attempt_at INTEGER;
UPDATE numbers SET attempts = 1 WHERE outbound_call = 0;
-- The dialer's queue of numbers held back, by when they are due.
CREATE INDEX numbers_retry_due ON numbers (group_id, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL AND deleted_at IS NULL;

-- Every call placed: a row at the claim (cause '' and call_end_time NULL while it is alive),
-- completed with the result in the transaction that writes the number's. The number's own row
-- shows its latest attempt. billsec: seconds from answer to end, 0 when not answered.
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    number_id        INTEGER NOT NULL REFERENCES numbers (id) ON DELETE CASCADE ON UPDATE CASCADE,
    group_id         INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    dest_number      TEXT    NOT NULL,
    uuid             TEXT    NOT NULL,
    call_start_time  INTEGER NOT NULL,
    call_answer_time INTEGER,
    call_end_time    INTEGER,
    cause            TEXT    NOT NULL DEFAULT '',
    sip_code         INTEGER,
    billsec          INTEGER NOT NULL DEFAULT 0,
    dtmf             TEXT    NOT NULL DEFAULT '',
    record_path      TEXT    NOT NULL DEFAULT '',
    UNIQUE (number_id, attempt)
);
-- Calls to one number across all tasks in the last 24 hours (--max-attempts-per-day).
CREATE INDEX attempts_by_dest_time ON attempts (dest_number, call_start_time);
-- The calls made before attempts were kept: one each.
INSERT INTO attempts (number_id, group_id, attempt, dest_number, uuid, call_start_time,
                      call_answer_time, call_end_time, cause, sip_code, billsec, dtmf, record_path)
SELECT id, group_id, 1, dest_number, uuid, coalesce(call_start_time, updated_at), call_answer_time,
       call_end_time, cause, sip_code,
       CASE WHEN call_answer_time IS NOT NULL AND call_end_time >= call_answer_time
            THEN call_end_time - call_answer_time ELSE 0 END,
       dtmf, record_path
FROM numbers WHERE outbound_call = 0 ORDER BY id;

-- The do-not-call list: a number listed with task_id NULL is never dialed by any task, with a
-- task_id by that task only. One entry per number and scope.
CREATE TABLE dnc (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    number     TEXT    NOT NULL,
    task_id    INTEGER,
    note       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX dnc_entry ON dnc (number, coalesce(task_id, 0));
-- The entries of one scope (task_id NULL: every task), newest first: the list's task filter, and
-- how many entries an import must look its numbers up in.
CREATE INDEX dnc_by_task ON dnc (task_id, id);

-- Result webhooks: the persistent outbox. A row per finished attempt of a task with a
-- webhook_url, written in the transaction that finishes the attempt (by the trigger below); its
-- body is fixed then: the task, the number's row and the attempt's, with unix times, which the
-- sender (src/webhooks) renders in the API's shape and zone, the same bytes at every try.
-- next_try_at: 0 until the first try (due at once), then when the next try is due; a row ends
-- `delivered` (2xx) or `failed` (no 2xx until 24 hours after created_at, the call's end).
-- Rows are kept, not pruned: they are the delivery history and its counts.
CREATE TABLE webhook_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id     INTEGER NOT NULL,
    attempt_id   INTEGER NOT NULL,
    url          TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    tries        INTEGER NOT NULL DEFAULT 0,
    next_try_at  INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    last_error   TEXT    NOT NULL DEFAULT '',
    delivered_at INTEGER
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_try_at) WHERE state = 'pending';

-- The queueing: when an attempt gets its end time. The number's row is written before its
-- attempt's in the same savepoint (db::numbers::finish, finish_interrupted), so the body shows
-- the number as this call left it.
CREATE TRIGGER attempts_queue_webhook AFTER UPDATE OF call_end_time ON attempts
WHEN OLD.call_end_time IS NULL AND NEW.call_end_time IS NOT NULL
BEGIN
    INSERT INTO webhook_outbox (group_id, attempt_id, url, body, created_at, next_try_at)
    SELECT t.id, NEW.id, t.webhook_url,
           json_object(
               'task', json_object('id', t.id, 'group_name', t.group_name),
               'number', json_object(
                   'id', n.id, 'group_id', n.group_id, 'dest_number', n.dest_number,
                   'external_id', n.external_id, 'uuid', n.uuid, 'call_status', n.call_status,
                   'outbound_call', n.outbound_call, 'dtmf', n.dtmf, 'cause', n.cause,
                   'call_start_time', n.call_start_time, 'call_answer_time', n.call_answer_time,
                   'call_end_time', n.call_end_time, 'created_at', n.created_at,
                   'updated_at', n.updated_at, 'deleted_at', n.deleted_at,
                   'sip_code', n.sip_code, 'record_path', n.record_path),
               'attempt', json_object(
                   'attempt', NEW.attempt, 'uuid', NEW.uuid, 'dest_number', NEW.dest_number,
                   'call_start_time', NEW.call_start_time,
                   'call_answer_time', NEW.call_answer_time,
                   'call_end_time', NEW.call_end_time, 'cause', NEW.cause,
                   'sip_code', NEW.sip_code, 'billsec', NEW.billsec, 'dtmf', NEW.dtmf,
                   'record_path', NEW.record_path)),
           NEW.call_end_time, 0
    FROM tasks t JOIN numbers n ON n.id = NEW.number_id
    WHERE t.id = NEW.group_id AND t.webhook_url <> '';
END;

-- Each task's rows by state, kept by triggers, so that stats (and the event stream, every second)
-- read one row. last_error: the latest failed try's error while any row of the task is pending
-- or failed; '' once none is.
CREATE TABLE webhook_counts (
    group_id   INTEGER PRIMARY KEY,
    pending    INTEGER NOT NULL DEFAULT 0,
    delivered  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT ''
);
CREATE TRIGGER webhook_counts_queued AFTER INSERT ON webhook_outbox
BEGIN
    INSERT INTO webhook_counts (group_id, pending) VALUES (NEW.group_id, NEW.state = 'pending')
    ON CONFLICT (group_id) DO UPDATE SET pending = pending + (NEW.state = 'pending');
END;
CREATE TRIGGER webhook_counts_tried AFTER UPDATE OF state, tries ON webhook_outbox
BEGIN
    UPDATE webhook_counts SET
        pending = pending - (OLD.state = 'pending') + (NEW.state = 'pending'),
        delivered = delivered - (OLD.state = 'delivered') + (NEW.state = 'delivered'),
        failed = failed - (OLD.state = 'failed') + (NEW.state = 'failed'),
        last_error = CASE
            WHEN pending - (OLD.state = 'pending') + (NEW.state = 'pending') = 0
             AND failed - (OLD.state = 'failed') + (NEW.state = 'failed') = 0 THEN ''
            WHEN NEW.state <> 'delivered' AND NEW.last_error <> '' THEN NEW.last_error
            ELSE last_error END
    WHERE group_id = NEW.group_id;
END;

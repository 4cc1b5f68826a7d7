//! Argon2 hashing and verifying on a small fixed pool of dedicated threads with a bounded queue.
//!
//! Each Argon2 run takes 19 MiB. Run on tokio's blocking pool, a login flood spawned hundreds of
//! threads each keeping its allocator arena, and each held a database connection meanwhile. Here
//! at most `threads` runs are alive, their memory is reused, and a full queue is refused at once.

use std::sync::{mpsc, Arc, Mutex, OnceLock};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use rand::rngs::OsRng;
use tokio::sync::oneshot;

/// The queue is full (or the pool stopped): the caller should answer "try again shortly".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

enum Job {
    /// `stored_hash: None` spends the time of a verify without a user (against a dummy hash).
    Verify {
        password: String,
        stored_hash: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    Hash {
        password: String,
        reply: oneshot::Sender<String>,
    },
}

/// Cloning shares the pool; its threads end when the last clone is dropped.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::SyncSender<Job>,
}

impl PasswordPool {
    /// `threads` workers, and up to `queue` jobs waiting for one.
    pub fn start(threads: usize, queue: usize) -> Self {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("outcall-password-{index}"))
                .spawn(move || work(&receiver))
                .expect("starting a password thread");
        }
        PasswordPool { jobs }
    }

    /// Whether `password` matches `stored_hash`; with no hash, spends the same time and says no.
    pub async fn verify(&self, password: String, stored_hash: Option<String>) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            stored_hash,
            reply,
        })?;
        answer.await.map_err(|_| Busy)
    }

    /// A new salted hash of `password`.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer.await.map_err(|_| Busy)
    }

    fn submit(&self, job: Job) -> Result<(), Busy> {
        self.jobs.try_send(job).map_err(|_| Busy)
    }
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for a job, never while hashing.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Verify {
                password,
                stored_hash,
                reply,
            }) => {
                let matches = match stored_hash {
                    Some(hash) => verify_password(&password, &hash),
                    None => {
                        verify_password(&password, dummy_hash());
                        false
                    }
                };
                let _ = reply.send(matches);
            }
            Ok(Job::Hash { password, reply }) => {
                let _ = reply.send(hash_password(&password));
            }
            Err(_) => return,
        }
    }
}

/// Logins yield the CPU to the dialer: a flood of them must not slow the calls down.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id only changes its scheduling niceness.
    unsafe {
        let thread_id = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread_id as libc::id_t, 10);
    }
}

/// Spent on logins that name no user, so the answer's time does not tell which logins exist.
fn dummy_hash() -> &'static str {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    DUMMY_HASH.get_or_init(|| hash_password("not a password"))
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 accepts any password with a generated salt")
        .to_string()
}

pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("secret");
        assert!(verify_password("secret", &hash));
        assert!(!verify_password("Secret", &hash));
        assert!(!verify_password("secret", "not a hash"));
    }

    #[tokio::test]
    async fn the_pool_hashes_and_verifies() {
        let pool = PasswordPool::start(2, 4);
        let hash = pool.hash("correct horse".into()).await.expect("a hash");
        assert_eq!(
            pool.verify("correct horse".into(), Some(hash.clone())).await,
            Ok(true)
        );
        assert_eq!(pool.verify("wrong".into(), Some(hash)).await, Ok(false));
        assert_eq!(pool.verify("correct horse".into(), None).await, Ok(false));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        // One worker, one waiting slot: of many jobs submitted together, most are refused without
        // waiting, and every job taken is answered.
        let pool = PasswordPool::start(1, 1);
        let answers = futures_util::future::join_all(
            (0..20).map(|_| pool.verify("x".into(), None)),
        )
        .await;
        let refused = answers.iter().filter(|a| **a == Err(Busy)).count();
        let answered = answers.iter().filter(|a| **a == Ok(false)).count();
        assert_eq!(refused + answered, 20);
        assert!(refused >= 17, "{refused} refused of 20: the queue is bounded");
        assert!(answered >= 1, "the pool answers what it takes");
    }
}

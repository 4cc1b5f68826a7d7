//! Argon2 hashing and verifying on a small fixed pool of dedicated threads with a bounded queue.
//!
//! Each Argon2 run takes 19 MiB. Run on tokio's blocking pool, a login flood spawned hundreds of
//! threads each keeping its allocator arena, and each held a database connection meanwhile. Here
//! at most `threads` runs are alive, and a full queue is refused at once. Each thread allocates its
//! Argon2 memory once and reuses it: letting argon2 allocate 19 MiB per run left glibc holding
//! hundreds of MiB after a few dozen logins, even on these two threads alone.

use std::sync::{mpsc, Arc, Mutex};

use argon2::{
    password_hash::{
        self, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
    },
    Algorithm, Argon2, Block, Params, Version,
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
    pub async fn verify(
        &self,
        password: String,
        stored_hash: Option<String>,
    ) -> Result<bool, Busy> {
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
    let mut memory = Argon2Memory::default();
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
                    Some(hash) => memory.verify(&password, &hash),
                    None => {
                        memory.verify(&password, dummy_hash());
                        false
                    }
                };
                let _ = reply.send(matches);
            }
            Ok(Job::Hash { password, reply }) => {
                let _ = reply.send(memory.hash(&password));
            }
            Err(_) => return,
        }
    }
}

/// Most Argon2 memory a stored hash may ask for (64 MiB); ours use 19 MiB.
const MAX_BLOCKS: usize = 64 * 1024;

/// One thread's Argon2 working memory, allocated at its first use and kept.
#[derive(Default)]
struct Argon2Memory {
    blocks: Vec<Block>,
}

impl Argon2Memory {
    fn run(
        &mut self,
        argon2: &Argon2<'_>,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let needed = argon2.params().block_count();
        if needed > MAX_BLOCKS {
            return Err(argon2::Error::MemoryTooMuch);
        }
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::new());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut self.blocks[..needed])
    }

    /// Like `hash_password`, in this memory.
    fn hash(&mut self, password: &str) -> String {
        self.try_hash(password)
            .expect("argon2 accepts any password with a generated salt")
    }

    fn try_hash(&mut self, password: &str) -> password_hash::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let argon2 = Argon2::default();
        let mut salt_buffer = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buffer)?;
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            Ok(self.run(&argon2, password.as_bytes(), salt_bytes, out)?)
        })?;
        let hash = PasswordHash {
            algorithm: Algorithm::default().ident(),
            version: Some(Version::default().into()),
            params: ParamsString::try_from(argon2.params())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Like `verify_password`, in this memory; the comparison takes constant time.
    fn verify(&mut self, password: &str, stored_hash: &str) -> bool {
        self.try_verify(password, stored_hash).unwrap_or(false)
    }

    fn try_verify(&mut self, password: &str, stored_hash: &str) -> password_hash::Result<bool> {
        let hash = PasswordHash::new(stored_hash)?;
        let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
            return Ok(false);
        };
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = match hash.version {
            Some(version) => Version::try_from(version)?,
            None => Version::default(),
        };
        let argon2 = Argon2::new(algorithm, version, Params::try_from(&hash)?);
        let mut salt_buffer = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buffer)?;
        let computed = Output::init_with(expected.len(), |out| {
            Ok(self.run(&argon2, password.as_bytes(), salt_bytes, out)?)
        })?;
        Ok(computed == expected)
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

/// Spent on logins that name no user, so the answer's time does not tell which logins exist. A
/// constant (its password is unknown and irrelevant): made once, it would cost an allocation.
fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$b3V0Y2FsbGR1bW15c2FsdA$n5S3b/3iWQhBxItUWz9sJHxhiJ3l8oQ2e0wR0eNnS7Q"
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

    #[test]
    fn reused_memory_gives_argon2s_own_answers() {
        let mut memory = Argon2Memory::default();
        let ours = memory.hash("secret password");
        assert!(
            verify_password("secret password", &ours),
            "argon2 accepts our hash"
        );
        assert!(!verify_password("secret passworD", &ours));
        let theirs = hash_password("secret password");
        assert!(
            memory.verify("secret password", &theirs),
            "we accept argon2's hash"
        );
        assert!(!memory.verify("Secret password", &theirs));
        assert!(!memory.verify("secret password", "not a hash"));
        // Another algorithm, version and cost, as a hash made elsewhere may have.
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(1024, 3, 1, None).unwrap(),
        )
        .hash_password(b"pw-elsewhere", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(memory.verify("pw-elsewhere", &other), "{other}");
        assert!(!memory.verify("pw-elsewherE", &other));
        // A hash asking for more memory than allowed is refused, not computed.
        let greedy = ours.replace("m=19456", "m=1048576");
        assert!(!memory.verify("secret password", &greedy));
        assert!(memory.blocks.len() <= MAX_BLOCKS);
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(dummy_hash()).expect("a valid hash");
        let real = hash_password("x");
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        assert!(!Argon2Memory::default().verify("not a password", dummy_hash()));
    }

    #[tokio::test]
    async fn the_pool_hashes_and_verifies() {
        let pool = PasswordPool::start(2, 4);
        let hash = pool.hash("correct horse".into()).await.expect("a hash");
        assert_eq!(
            pool.verify("correct horse".into(), Some(hash.clone()))
                .await,
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
        let answers =
            futures_util::future::join_all((0..20).map(|_| pool.verify("x".into(), None))).await;
        let refused = answers.iter().filter(|a| **a == Err(Busy)).count();
        let answered = answers.iter().filter(|a| **a == Ok(false)).count();
        assert_eq!(refused + answered, 20);
        assert!(
            refused >= 17,
            "{refused} refused of 20: the queue is bounded"
        );
        assert!(answered >= 1, "the pool answers what it takes");
    }
}

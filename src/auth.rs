//! Users, roles, passwords and login tokens.
//!
//! Password hashing runs on a small pool of its own (`hasher`), never while a database connection
//! is held, and logins are throttled per client and per login (`throttle`).

pub mod hasher;
pub mod throttle;

use std::{io::Write, net::IpAddr, path::Path, time::Instant};

use rand::{distributions::Alphanumeric, rngs::OsRng, Rng, RngCore};
use sha2::{Digest, Sha256};

pub use self::hasher::{hash_password, verify_password, Busy, PasswordPool};
use self::throttle::{LoginThrottle, ThrottleRules};
use crate::{
    clock,
    db::{self, Db, DbError},
};

pub const ADMIN_LOGIN: &str = "admin";
pub const ADMIN_PASSWORD_FILE: &str = "admin-password.txt";
/// Fewest characters of any password: the admin's at start-up, and any set through the API.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Two Argon2 runs at a time (19 MiB each) and a short queue: a login flood costs ~40 MiB at most.
const PASSWORD_THREADS: usize = 2;
const PASSWORD_QUEUE: usize = 16;

pub use crate::domain::Role;

/// The user a request's token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub role: Role,
}

/// Why a password is not acceptable as a new one.
pub fn check_new_password(field: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "{field} must be at least {MIN_PASSWORD_CHARS} characters long (it has {chars})"
        ));
    }
    Ok(())
}

/// A new opaque token: 256 random bits, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Tokens are stored only as this digest.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A login that succeeded.
pub struct Login {
    pub token: String,
    pub expires_at: i64,
    pub user_id: i64,
}

/// Why a login or a password check gave no answer.
#[derive(Debug)]
pub enum AuthError {
    /// Too many failed attempts lately: try again after this many seconds.
    Throttled {
        retry_after_seconds: u64,
    },
    /// The hashing pool is full: try again in a moment.
    Busy,
    Db(DbError),
}

impl From<DbError> for AuthError {
    fn from(error: DbError) -> Self {
        AuthError::Db(error)
    }
}

impl From<Busy> for AuthError {
    fn from(_: Busy) -> Self {
        AuthError::Busy
    }
}

/// Logins, password checks and changes: the hashing pool and the throttle, over the database.
pub struct Accounts {
    db: Db,
    passwords: PasswordPool,
    throttle: LoginThrottle,
    token_ttl_seconds: i64,
}

impl Accounts {
    pub fn new(db: Db, token_ttl_seconds: i64) -> Self {
        Accounts {
            db,
            passwords: PasswordPool::start(PASSWORD_THREADS, PASSWORD_QUEUE),
            throttle: LoginThrottle::new(ThrottleRules::default()),
            token_ttl_seconds,
        }
    }

    /// Checks the credentials and opens a session; `None` when they are wrong. The database
    /// connection is released while the password is checked.
    pub async fn log_in(
        &self,
        client: IpAddr,
        login: String,
        password: String,
    ) -> Result<Option<Login>, AuthError> {
        let Some(user_id) = self.check_password(client, &login, password).await? else {
            return Ok(None);
        };
        let token = new_token();
        let now = clock::now();
        let expires_at = now + self.token_ttl_seconds;
        let digest = token_digest(&token);
        self.db
            .run(move |conn| db::sessions::insert(conn, &digest, user_id, now, expires_at))
            .await?;
        Ok(Some(Login {
            token,
            expires_at,
            user_id,
        }))
    }

    /// The id of the user `login` when `password` is theirs; throttled like a login.
    pub async fn check_password(
        &self,
        client: IpAddr,
        login: &str,
        password: String,
    ) -> Result<Option<i64>, AuthError> {
        let attempt = self
            .throttle
            .begin(client, login, Instant::now())
            .map_err(|wait| AuthError::Throttled {
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        let wanted = login.to_owned();
        let user = match self
            .db
            .run(move |conn| db::users::find_by_login(conn, &wanted))
            .await
        {
            Ok(user) => user,
            Err(error) => {
                self.throttle.not_checked(attempt);
                return Err(error.into());
            }
        };
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        match self.passwords.verify(password, stored_hash).await {
            Err(Busy) => {
                self.throttle.not_checked(attempt);
                Err(AuthError::Busy)
            }
            Ok(true) => {
                self.throttle.succeeded(attempt, Instant::now());
                Ok(user.map(|u| u.id))
            }
            Ok(false) => {
                self.throttle.failed(attempt, Instant::now());
                Ok(None)
            }
        }
    }

    /// A salted hash of a new password, made on the hashing pool.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        Ok(self.passwords.hash(password).await?)
    }

    /// The user a presented token belongs to, if it is live.
    pub async fn caller_of_token(&self, token: &str) -> Result<Option<Caller>, DbError> {
        let digest = token_digest(token);
        let found = self
            .db
            .run(move |conn| db::sessions::user_of(conn, &digest, clock::now()))
            .await?;
        Ok(found.map(|(user_id, role)| Caller { user_id, role }))
    }

    pub async fn log_out(&self, token: &str) -> Result<bool, DbError> {
        let digest = token_digest(token);
        self.db
            .run(move |conn| db::sessions::delete(conn, &digest))
            .await
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// On first start (no user at all) creates `admin`, with the configured password or a random one
/// that is logged once and written to `<data-dir>/admin-password.txt` (mode 0600, created anew:
/// an existing file or a symbolic link there is refused, never overwritten or followed).
pub async fn ensure_admin(
    db: &Db,
    data_dir: &Path,
    configured_password: Option<String>,
) -> anyhow::Result<()> {
    let has_users = db.run(|conn| db::users::count(conn)).await? > 0;
    if has_users {
        return Ok(());
    }
    let generated = configured_password.is_none();
    let password = configured_password.unwrap_or_else(|| {
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect()
    });
    let file = data_dir.join(ADMIN_PASSWORD_FILE);
    if generated {
        write_new_private_file(&file, &format!("{password}\n"))?;
    }
    let hash = hash_password(&password);
    db.run(move |conn| db::users::insert(conn, ADMIN_LOGIN, &hash, Role::Admin, clock::now()))
        .await?;
    if generated {
        tracing::warn!(
            login = ADMIN_LOGIN,
            password = %password,
            file = %file.display(),
            "created the first user with a random password (shown only this once; also saved in the file)"
        );
    } else {
        tracing::info!(
            login = ADMIN_LOGIN,
            "created the first user with the password from OUTCALL_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

/// Creates `path` (mode 0600) and writes `contents`; refuses when anything, a symbolic link
/// included, is already there.
fn write_new_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let what = match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => "is a symbolic link",
                _ => "already exists",
            };
            anyhow::bail!(
                "{} {what}: refusing to write the new admin password there. Remove it (it belongs \
                 to no user of this database), or set OUTCALL_ADMIN_PASSWORD",
                path.display()
            );
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("creating {}", path.display())))
        }
    };
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_digested() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), a);
    }

    #[test]
    fn new_passwords_need_ten_characters() {
        assert!(check_new_password("password", "123456789").is_err());
        assert!(check_new_password("password", "1234567890").is_ok());
        // Characters, not bytes.
        assert!(check_new_password("password", "密码密码密码").is_err());
        let message = check_new_password("new_password", "short").unwrap_err();
        assert!(
            message.contains("new_password") && message.contains("10"),
            "{message}"
        );
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Admin, Role::Readonly] {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert_eq!("root".parse::<Role>().ok(), None);
    }

    #[test]
    fn the_password_file_is_never_overwritten_nor_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_PASSWORD_FILE);
        write_new_private_file(&path, "first\n").expect("a new file");
        let error = write_new_private_file(&path, "second\n").unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");

        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = write_new_private_file(&link, "secret\n").unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(!target.exists(), "nothing was written through the link");
    }
}

//! Users, passwords and login tokens.

use std::{io::Write, path::Path};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use rand::{distributions::Alphanumeric, rngs::OsRng, Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::{
    clock,
    db::{self, Db, DbResult},
};

pub const ADMIN_LOGIN: &str = "admin";
pub const ADMIN_PASSWORD_FILE: &str = "admin-password.txt";

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

/// Checks the credentials and opens a session; `None` when they are wrong.
pub async fn log_in(
    db: &Db,
    login: String,
    password: String,
    ttl_seconds: i64,
) -> DbResult<Option<Login>> {
    db.run(move |conn| {
        let Some(user) = db::users::find_by_login(conn, &login)? else {
            // Spend the same time as for a real user, so the answer does not tell which logins exist.
            verify_password(
                &password,
                DUMMY_HASH.get_or_init(|| hash_password("not a password")),
            );
            return Ok(None);
        };
        if !verify_password(&password, &user.password_hash) {
            return Ok(None);
        }
        let token = new_token();
        let now = clock::now();
        let expires_at = now + ttl_seconds;
        db::sessions::insert(conn, &token_digest(&token), user.id, now, expires_at)?;
        Ok(Some(Login {
            token,
            expires_at,
            user_id: user.id,
        }))
    })
    .await
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The user a presented token belongs to, if it is live.
pub async fn user_of_token(db: &Db, token: &str) -> DbResult<Option<i64>> {
    let digest = token_digest(token);
    db.run(move |conn| db::sessions::user_of(conn, &digest, clock::now()))
        .await
}

pub async fn log_out(db: &Db, token: &str) -> DbResult<bool> {
    let digest = token_digest(token);
    db.run(move |conn| db::sessions::delete(conn, &digest))
        .await
}

/// On first start (no user at all) creates `admin`, with the configured password or a random one
/// that is logged once and written to `<data-dir>/admin-password.txt` (mode 0600).
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
    if generated {
        write_private_file(
            &data_dir.join(ADMIN_PASSWORD_FILE),
            &format!("{password}\n"),
        )?;
    }
    let hash = hash_password(&password);
    db.run(move |conn| db::users::insert(conn, ADMIN_LOGIN, &hash, clock::now()))
        .await?;
    if generated {
        tracing::warn!(
            login = ADMIN_LOGIN,
            password = %password,
            file = %data_dir.join(ADMIN_PASSWORD_FILE).display(),
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

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
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
    fn tokens_are_unique_and_digested() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), a);
    }
}

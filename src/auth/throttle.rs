//! Login throttling per client address and per login name.
//!
//! Each key gets a small burst of failed logins free; after that each further attempt waits twice
//! as long as the one before, up to a ceiling (a minute), so a guesser gets about one try a minute
//! while the rightful user, after the wait, logs in. An attempt counts as failed from the moment
//! it starts (so a concurrent flood cannot slip a hundred guesses through before the first fails)
//! and is given back when it succeeds or was never checked. Each table holds a bounded number of
//! keys; when full, entries long quiet are forgotten first, then the least recently used.
//!
//! A client address that logged in as a user before is not held back by that user's count: a
//! guesser elsewhere hammering `admin` cannot keep the admin out from their usual address.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
pub struct ThrottleRules {
    /// Failed attempts allowed before any waiting.
    pub burst: u32,
    /// The wait after the first failure past the burst; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// A key with no attempt for this long starts afresh.
    pub forget_after: Duration,
    /// Most keys kept per table (addresses, logins, known address and login pairs).
    pub capacity: usize,
    /// How long an address stays known for a login after a right password from it.
    pub known_for: Duration,
}

impl Default for ThrottleRules {
    fn default() -> Self {
        ThrottleRules {
            burst: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            capacity: 4096,
            known_for: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_attempt: Instant,
}

/// A bounded map of keys to their failures.
struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            entries: HashMap::new(),
        }
    }

    /// How long `key` must still wait, if it must.
    fn wait(&self, key: &K, now: Instant, rules: &ThrottleRules) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if entry.failures < rules.burst
            || now.duration_since(entry.last_attempt) >= rules.forget_after
        {
            return None;
        }
        let delay = crate::clock::doubled(
            rules.first_delay,
            entry.failures - rules.burst,
            rules.max_delay,
        );
        let ready = entry.last_attempt + delay;
        (ready > now).then(|| ready - now)
    }

    fn count_failure(&mut self, key: &K, now: Instant, rules: &ThrottleRules) {
        if !self.entries.contains_key(key) && self.entries.len() >= rules.capacity {
            self.make_room(now, rules);
        }
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_attempt: now,
        });
        if now.duration_since(entry.last_attempt) >= rules.forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_attempt = now;
    }

    fn touch(&mut self, key: &K, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_attempt = entry.last_attempt.max(now);
        }
    }

    fn give_back(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn make_room(&mut self, now: Instant, rules: &ThrottleRules) {
        self.entries
            .retain(|_, entry| now.duration_since(entry.last_attempt) < rules.forget_after);
        if self.entries.len() >= rules.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_attempt)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                self.entries.remove(&key);
            }
        }
    }
}

/// The client part of an address that one party controls: an IPv4 address, an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl From<IpAddr> for ClientKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

struct Tables {
    by_client: Table<ClientKey>,
    by_login: Table<String>,
    /// Address and login pairs with a right password lately, and when.
    known: HashMap<(ClientKey, String), Instant>,
}

impl Tables {
    fn is_known(&self, key: &(ClientKey, String), now: Instant, rules: &ThrottleRules) -> bool {
        self.known
            .get(key)
            .is_some_and(|since| now.duration_since(*since) < rules.known_for)
    }

    fn remember(&mut self, key: (ClientKey, String), now: Instant, rules: &ThrottleRules) {
        if !self.known.contains_key(&key) && self.known.len() >= rules.capacity {
            self.known
                .retain(|_, since| now.duration_since(*since) < rules.known_for);
            if self.known.len() >= rules.capacity {
                let oldest = self
                    .known
                    .iter()
                    .min_by_key(|(_, since)| **since)
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    self.known.remove(&oldest);
                }
            }
        }
        self.known.insert(key, now);
    }
}

pub struct LoginThrottle {
    rules: ThrottleRules,
    tables: Mutex<Tables>,
}

/// An attempt let through: counted as failed until `succeeded` or `not_checked` says otherwise.
#[derive(Debug, Clone)]
pub struct Attempt {
    client: ClientKey,
    login: String,
}

impl LoginThrottle {
    pub fn new(rules: ThrottleRules) -> Self {
        LoginThrottle {
            rules,
            tables: Mutex::new(Tables {
                by_client: Table::new(),
                by_login: Table::new(),
                known: HashMap::new(),
            }),
        }
    }

    /// Lets an attempt of `login` from `client` through, or says how long to wait.
    pub fn begin(&self, client: IpAddr, login: &str, now: Instant) -> Result<Attempt, Duration> {
        let client = ClientKey::from(client);
        let login = login.to_owned();
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let known = tables.is_known(&(client, login.clone()), now, &self.rules);
        let login_wait = if known {
            None
        } else {
            tables.by_login.wait(&login, now, &self.rules)
        };
        let wait = [tables.by_client.wait(&client, now, &self.rules), login_wait]
            .into_iter()
            .flatten()
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        tables.by_client.count_failure(&client, now, &self.rules);
        tables.by_login.count_failure(&login, now, &self.rules);
        Ok(Attempt { client, login })
    }

    /// The password was wrong: the wait runs from now, the answer, rather than from the start of
    /// a check that may have queued a while.
    pub fn failed(&self, attempt: Attempt, now: Instant) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.by_login.touch(&attempt.login, now);
        tables.by_client.touch(&attempt.client, now);
    }

    /// The password was right: the login starts afresh, the client gets its attempt back.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.by_login.forget(&attempt.login);
        tables.by_client.give_back(&attempt.client);
        tables.remember((attempt.client, attempt.login), now, &self.rules);
    }

    /// The password was never checked (the hashing pool was full): the attempt does not count.
    pub fn not_checked(&self, attempt: Attempt) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.by_login.give_back(&attempt.login);
        tables.by_client.give_back(&attempt.client);
    }

    /// Keys held: clients, logins, known pairs (for tests and figures).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        (
            tables.by_client.entries.len(),
            tables.by_login.entries.len(),
            tables.known.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn rules() -> ThrottleRules {
        ThrottleRules {
            capacity: 8,
            ..ThrottleRules::default()
        }
    }

    #[test]
    fn a_burst_then_doubling_waits_up_to_the_ceiling() {
        let throttle = LoginThrottle::new(rules());
        let start = Instant::now();
        for _ in 0..5 {
            throttle
                .begin(HOME, "admin", start)
                .expect("inside the burst");
        }
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let wait = throttle.begin(HOME, "admin", now).expect_err("throttled");
            waits.push(wait.as_secs());
            now += wait;
            throttle.begin(HOME, "admin", now).expect("after the wait");
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn a_right_password_after_the_wait_clears_the_login() {
        let throttle = LoginThrottle::new(rules());
        let now = Instant::now();
        for _ in 0..5 {
            throttle.begin(HOME, "admin", now).unwrap();
        }
        let wait = throttle.begin(HOME, "admin", now).unwrap_err();
        let attempt = throttle.begin(HOME, "admin", now + wait).unwrap();
        throttle.succeeded(attempt, now + wait);
        // The login is clear; the client's earlier failures still count.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));
        throttle
            .begin(other, "admin", now + wait)
            .expect("admin is free again");
        assert!(throttle.begin(HOME, "someone", now + wait).is_err());
    }

    #[test]
    fn the_wait_runs_from_the_failed_answer() {
        let throttle = LoginThrottle::new(rules());
        let start = Instant::now();
        let answered = start + Duration::from_secs(3);
        for _ in 0..5 {
            let attempt = throttle.begin(HOME, "admin", start).unwrap();
            throttle.failed(attempt, answered);
        }
        let wait = throttle
            .begin(HOME, "admin", answered)
            .expect_err("throttled");
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn unchecked_attempts_do_not_count() {
        let throttle = LoginThrottle::new(rules());
        let now = Instant::now();
        for _ in 0..50 {
            let attempt = throttle.begin(HOME, "admin", now).expect("never throttled");
            throttle.not_checked(attempt);
        }
        assert_eq!(throttle.sizes(), (0, 0, 0));
    }

    #[test]
    fn both_the_client_and_the_login_are_limited() {
        let throttle = LoginThrottle::new(rules());
        let now = Instant::now();
        for n in 0..5 {
            throttle.begin(HOME, &format!("user{n}"), now).unwrap();
        }
        assert!(throttle.begin(HOME, "fresh", now).is_err(), "by client");
        for n in 0..5u8 {
            let client = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, n));
            throttle.begin(client, "admin", now).unwrap();
        }
        let client = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 99));
        assert!(throttle.begin(client, "admin", now).is_err(), "by login");
    }

    #[test]
    fn a_known_address_is_not_held_back_by_guessers_elsewhere() {
        let throttle = LoginThrottle::new(rules());
        let now = Instant::now();
        let attempt = throttle.begin(HOME, "admin", now).unwrap();
        throttle.succeeded(attempt, now);
        for n in 0..20u8 {
            let guesser = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, n));
            let _ = throttle.begin(guesser, "admin", now);
        }
        let stranger = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
        assert!(
            throttle.begin(stranger, "admin", now).is_err(),
            "admin is throttled"
        );
        throttle
            .begin(HOME, "admin", now)
            .expect("but not from where admin logged in before");
        // The known address still has its own limit.
        for _ in 0..4 {
            throttle.begin(HOME, "admin", now).unwrap();
        }
        assert!(throttle.begin(HOME, "admin", now).is_err());
        // Known pairs are bounded too.
        for n in 0..100u32 {
            let attempt = throttle.begin(IpAddr::V4(n.into()), "x", now).unwrap();
            throttle.succeeded(attempt, now);
        }
        assert_eq!(throttle.sizes().2, 8);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ClientKey::from(mapped), ClientKey::from(HOME));
    }

    #[test]
    fn the_tables_stay_bounded_and_forget_quiet_keys() {
        let throttle = LoginThrottle::new(rules());
        let now = Instant::now();
        for n in 0..1000u32 {
            let client = IpAddr::V4(n.into());
            let _ = throttle.begin(client, &format!("login{n}"), now);
        }
        assert_eq!(throttle.sizes(), (8, 8, 0));
        let later = now + ThrottleRules::default().forget_after;
        for _ in 0..5 {
            throttle.begin(HOME, "admin", now).unwrap();
        }
        throttle
            .begin(HOME, "admin", later)
            .expect("failures long past are forgotten");
    }
}

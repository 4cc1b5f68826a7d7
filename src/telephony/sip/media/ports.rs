//! RTP ports from the configured range.
//!
//! RTP takes even ports, leaving the odd one above for RTCP (RFC 3550 §11), so the range is a set
//! of pairs. Each call's port is drawn at random among the free ones, so that a stranger cannot
//! predict the port of the next call and send to it first (and a port freed by a call that just
//! ended, which may still receive that call's last packets, is seldom taken again at once).

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
};

use rand::Rng;
use tokio::net::UdpSocket;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("the RTP port range {low}-{high} holds no even/odd port pair")]
    EmptyRange { low: u16, high: u16 },
    #[error("every RTP port of {low}-{high} is in use")]
    Exhausted { low: u16, high: u16 },
    #[error("cannot bind an RTP socket on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
}

/// The RTP port range, shared by all calls (cheap to clone).
#[derive(Debug, Clone)]
pub struct RtpPorts {
    pool: Arc<Mutex<Pool>>,
    low: u16,
    high: u16,
}

#[derive(Debug)]
struct Pool {
    first_port: u16,
    in_use: Vec<bool>,
}

impl RtpPorts {
    /// The even ports `p` with `low <= p` and `p + 1 <= high` (and `p > 0`).
    pub fn new(low: u16, high: u16) -> Result<RtpPorts, PortError> {
        // Port 0 would mean "any port" to bind().
        let first_port = low.saturating_add(low % 2).max(2);
        if first_port == u16::MAX || first_port >= high {
            return Err(PortError::EmptyRange { low, high });
        }
        let pairs = (high as usize - 1 - first_port as usize) / 2 + 1;
        Ok(RtpPorts {
            pool: Arc::new(Mutex::new(Pool {
                first_port,
                in_use: vec![false; pairs],
            })),
            low,
            high,
        })
    }

    /// Reserves a free even port among ours; `None` when all are taken. The port is only
    /// reserved among our calls: [`RtpPorts::bind`] also skips ports other programs hold.
    pub fn allocate(&self) -> Option<PortLease> {
        let mut pool = lock(&self.pool);
        let pairs = pool.in_use.len();
        // A few random draws find a free port in all but a nearly full range; then the first
        // free one after a random start.
        let start = rand::thread_rng().gen_range(0..pairs);
        let index = (0..8)
            .map(|_| rand::thread_rng().gen_range(0..pairs))
            .find(|&index| !pool.in_use[index])
            .or_else(|| {
                (0..pairs)
                    .map(|offset| (start + offset) % pairs)
                    .find(|&index| !pool.in_use[index])
            })?;
        pool.in_use[index] = true;
        Some(PortLease {
            port: pool.first_port + 2 * index as u16,
            pool: self.pool.clone(),
        })
    }

    /// How many ports are free among ours.
    pub fn available(&self) -> usize {
        lock(&self.pool)
            .in_use
            .iter()
            .filter(|used| !**used)
            .count()
    }

    /// Binds a UDP socket on `ip` and a free port of ours, passing over ports that another
    /// program has bound.
    pub async fn bind(&self, ip: IpAddr) -> Result<RtpSocket, PortError> {
        // Held until the end so that allocate() does not offer them again during this search.
        let mut taken_elsewhere = Vec::new();
        loop {
            let Some(lease) = self.allocate() else {
                return Err(PortError::Exhausted {
                    low: self.low,
                    high: self.high,
                });
            };
            let address = SocketAddr::new(ip, lease.port);
            match UdpSocket::bind(address).await {
                Ok(socket) => {
                    return Ok(RtpSocket {
                        socket,
                        lease: Some(lease),
                    })
                }
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!(%address, "RTP port in use by another program");
                    taken_elsewhere.push(lease);
                }
                Err(source) => return Err(PortError::Bind { address, source }),
            }
        }
    }
}

/// A poisoned lock only means another thread panicked mid-way through a flag update, which
/// leaves the flags consistent: carry on.
fn lock(pool: &Mutex<Pool>) -> MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A reserved port; dropping it frees the port.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<Mutex<Pool>>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut pool = lock(&self.pool);
        let index = ((self.port - pool.first_port) / 2) as usize;
        pool.in_use[index] = false;
    }
}

/// A bound RTP socket, holding its port's lease (when it came from [`RtpPorts`]) for as long as
/// it lives.
#[derive(Debug)]
pub struct RtpSocket {
    socket: UdpSocket,
    lease: Option<PortLease>,
}

impl RtpSocket {
    /// Adopts a socket bound some other way.
    pub fn new(socket: UdpSocket) -> RtpSocket {
        RtpSocket {
            socket,
            lease: None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn into_parts(self) -> (UdpSocket, Option<PortLease>) {
        (self.socket, self.lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ranges() {
        let ports = |low, high| RtpPorts::new(low, high).map(|ports| ports.available());
        assert_eq!(ports(10000, 10001).unwrap(), 1);
        assert_eq!(ports(10000, 10003).unwrap(), 2);
        assert_eq!(ports(10000, 10004).unwrap(), 2);
        assert_eq!(ports(10001, 10005).unwrap(), 2);
        assert_eq!(ports(10001, 10004).unwrap(), 1);
        assert_eq!(ports(0, u16::MAX).unwrap(), 32767);
        assert!(ports(10000, 10000).is_err());
        assert!(ports(10001, 10002).is_err());
        assert!(ports(20000, 10000).is_err());
        assert!(ports(u16::MAX, u16::MAX).is_err());
    }

    #[test]
    fn even_ports_freed_on_drop() {
        let ports = RtpPorts::new(20001, 20007).unwrap();
        let first = ports.allocate().unwrap();
        let second = ports.allocate().unwrap();
        let third = ports.allocate().unwrap();
        let mut handed_out = [first.port(), second.port(), third.port()];
        handed_out.sort();
        assert_eq!(handed_out, [20002, 20004, 20006]);
        assert!(ports.allocate().is_none());
        let freed = second.port();
        drop(second);
        assert_eq!(ports.available(), 1);
        assert_eq!(ports.allocate().unwrap().port(), freed);
        drop(first);
        drop(third);
    }

    #[test]
    fn ports_are_not_predictable() {
        let ports = RtpPorts::new(20000, 29999).unwrap();
        let drawn: Vec<u16> = (0..50).map(|_| ports.allocate().unwrap().port()).collect();
        // Freed at once, yet the next port is not the one before, nor the one after it.
        let successors = drawn
            .windows(2)
            .filter(|pair| pair[1].abs_diff(pair[0]) <= 2)
            .count();
        assert!(successors < 5, "{drawn:?}");
        let distinct: HashSet<u16> = drawn.iter().copied().collect();
        assert!(distinct.len() > 40, "{drawn:?}");
    }

    #[test]
    fn concurrent_allocations_never_share_a_port() {
        let ports = RtpPorts::new(30000, 30999).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ports = ports.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for round in 0..500 {
                        if let Some(lease) = ports.allocate() {
                            held.push(lease);
                        }
                        if round % 3 == 0 {
                            held.pop();
                        }
                    }
                    held
                })
            })
            .collect();
        let held: Vec<PortLease> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let distinct: HashSet<u16> = held.iter().map(PortLease::port).collect();
        assert_eq!(distinct.len(), held.len());
        assert_eq!(ports.available(), 500 - held.len());
        drop(held);
        assert_eq!(ports.available(), 500);
    }

    #[tokio::test]
    async fn bind_skips_ports_other_programs_hold() {
        for _attempt in 0..5 {
            // A port the system chose is free now; hold its even pair as "another program".
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let probe_port = probe.local_addr().unwrap().port();
            let low = probe_port & !1;
            if low >= u16::MAX - 4 {
                continue;
            }
            let other = if probe_port == low {
                Some(probe)
            } else {
                drop(probe);
                std::net::UdpSocket::bind(("127.0.0.1", low)).ok()
            };
            let ports = RtpPorts::new(low, low + 3).unwrap();
            match ports.bind("127.0.0.1".parse().unwrap()).await {
                Ok(socket) => {
                    assert_eq!(socket.local_addr().unwrap().port(), low + 2);
                    assert_eq!(ports.available(), 1, "the skipped port is free again");
                    drop(socket);
                    assert_eq!(ports.available(), 2);
                    drop(other);
                    return;
                }
                // Someone else holds low + 2 as well: try elsewhere.
                Err(PortError::Exhausted { .. }) => continue,
                Err(error) => panic!("{error}"),
            }
        }
        panic!("no free port pair found to test with");
    }

    #[tokio::test]
    async fn bind_reports_exhaustion_and_bad_addresses() {
        let ports = RtpPorts::new(40000, 40001).unwrap();
        let _lease = ports.allocate().unwrap();
        assert!(matches!(
            ports.bind("127.0.0.1".parse().unwrap()).await,
            Err(PortError::Exhausted {
                low: 40000,
                high: 40001
            })
        ));
        let ports = RtpPorts::new(40000, 40001).unwrap();
        // TEST-NET-1 is never a local address.
        assert!(matches!(
            ports.bind("192.0.2.1".parse().unwrap()).await,
            Err(PortError::Bind { .. })
        ));
        assert_eq!(ports.available(), 1);
    }
}

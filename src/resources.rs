//! Operating-system resources outcall sizes itself by: open file descriptors.

/// Descriptors kept for everything but HTTP clients and calls: the database and its WAL, the
/// logs, the SIP sockets, the blocking threads' files.
const BASE_DESCRIPTORS: u64 = 128;
/// Descriptors a live call may hold (its RTP socket, a recording, a prompt being read).
const DESCRIPTORS_PER_CALL: u64 = 3;
/// However many descriptors there are, no more HTTP connections than this.
const MOST_HTTP_CONNECTIONS: u64 = 25_000;
/// However few descriptors there are, at least this many HTTP connections.
const LEAST_HTTP_CONNECTIONS: u64 = 16;

/// Raises the soft limit of open files to the hard limit; answers the soft limit in force.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not read the open files limit");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not raise the open files limit");
        }
    }
    limit.rlim_cur
}

/// How the open files limit is shared between calls and HTTP clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPlan {
    /// The soft limit of open files in force.
    pub limit: u64,
    /// The most calls alive at once the limit leaves descriptors for, HTTP keeping its least.
    pub calls_allowed: u64,
    /// Descriptors `--max-channels` calls need, with HTTP's least and what outcall keeps.
    pub needed: u64,
    /// How many HTTP connections may be open at once.
    pub http_connections: usize,
}

impl DescriptorPlan {
    /// Whether `--max-channels` calls fit in the limit.
    pub fn is_enough(&self) -> bool {
        self.needed <= self.limit
    }
}

/// Shares `descriptor_limit` so that HTTP clients can never take the descriptors `max_channels`
/// calls need: HTTP gets what the calls leave, at least a quarter of the limit.
pub fn descriptor_plan(descriptor_limit: u64, max_channels: usize) -> DescriptorPlan {
    let for_calls = BASE_DESCRIPTORS + DESCRIPTORS_PER_CALL * max_channels as u64;
    let left = descriptor_limit.saturating_sub(for_calls);
    let floor = (descriptor_limit / 4).max(LEAST_HTTP_CONNECTIONS);
    DescriptorPlan {
        limit: descriptor_limit,
        calls_allowed: descriptor_limit.saturating_sub(BASE_DESCRIPTORS + floor)
            / DESCRIPTORS_PER_CALL,
        needed: for_calls + floor,
        http_connections: left.max(floor).min(MOST_HTTP_CONNECTIONS) as usize,
    }
}

/// Logs the plan: the limit and the calls it allows, and a warning with the numbers when
/// `--max-channels` needs more.
pub fn log_descriptor_plan(plan: &DescriptorPlan, max_channels: usize) {
    tracing::info!(
        open_files_limit = plan.limit,
        calls_allowed = plan.calls_allowed,
        max_channels,
        http_connections = plan.http_connections,
        "open files limit {}: room for {} calls at once ({DESCRIPTORS_PER_CALL} descriptors \
         each) and {} HTTP connections",
        plan.limit,
        plan.calls_allowed,
        plan.http_connections,
    );
    if !plan.is_enough() {
        tracing::warn!(
            open_files_limit = plan.limit,
            calls_allowed = plan.calls_allowed,
            max_channels,
            descriptors_needed = plan.needed,
            "--max-channels {max_channels} needs {} open files but the limit is {}, enough for \
             {} calls; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) or lower \
             --max-channels",
            plan.needed,
            plan.limit,
            plan.calls_allowed,
        );
    }
}

/// How many HTTP connections may be open at once, so that HTTP clients can never take the
/// descriptors `max_channels` calls need.
pub fn http_connection_budget(descriptor_limit: u64, max_channels: usize) -> usize {
    descriptor_plan(descriptor_limit, max_channels).http_connections
}

/// Sets a listening socket's queue of connections not yet accepted: connections beyond the
/// HTTP limit wait there instead of being refused.
pub fn set_listen_backlog(listener: &std::net::TcpListener, backlog: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a socket that is already listening only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keep_their_descriptors() {
        // Plenty: HTTP gets what the calls leave, up to the cap.
        assert_eq!(http_connection_budget(1 << 20, 1000), 25_000);
        assert_eq!(http_connection_budget(10_000, 1000), 10_000 - 128 - 3000);
        // Too few for the calls: HTTP still gets a quarter, never more.
        assert_eq!(http_connection_budget(1024, 1000), 256);
        assert_eq!(http_connection_budget(1024, 100), 1024 - 128 - 300);
    }

    #[test]
    fn the_plan_says_how_many_calls_fit() {
        // systemd's default: 1,024 - 128 kept - 256 for HTTP leaves 640, 213 calls.
        let plan = descriptor_plan(1024, 1000);
        assert_eq!(plan.calls_allowed, 213);
        assert_eq!(plan.needed, 128 + 3000 + 256);
        assert!(!plan.is_enough());
        // Exactly at the edge: 213 calls fit, 214 do not.
        assert!(descriptor_plan(1024, 213).is_enough());
        assert!(!descriptor_plan(1024, 214).is_enough());
        assert_eq!(descriptor_plan(1024, 213).needed, 1024 - 1);
        // A common hard limit.
        let plan = descriptor_plan(524_288, 1000);
        assert_eq!(plan.calls_allowed, (524_288 - 128 - 131_072) / 3);
        assert!(plan.is_enough());
        assert_eq!(plan.http_connections, 25_000);
        // Tiny limits never underflow.
        let plan = descriptor_plan(10, 1);
        assert_eq!((plan.calls_allowed, plan.http_connections), (0, 16));
        assert!(!plan.is_enough());
    }
}

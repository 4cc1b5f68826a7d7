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

/// How many HTTP connections may be open at once, so that HTTP clients can never take the
/// descriptors `max_channels` calls need.
pub fn http_connection_budget(descriptor_limit: u64, max_channels: usize) -> usize {
    let for_calls = BASE_DESCRIPTORS + DESCRIPTORS_PER_CALL * max_channels as u64;
    let left = descriptor_limit.saturating_sub(for_calls);
    let floor = (descriptor_limit / 4).max(LEAST_HTTP_CONNECTIONS);
    if left < floor {
        tracing::warn!(
            descriptor_limit,
            max_channels,
            "the open files limit is too low for --max-channels calls at once; raise the hard \
             limit (systemd LimitNOFILE=, ulimit -Hn) or lower --max-channels"
        );
    }
    left.max(floor).min(MOST_HTTP_CONNECTIONS) as usize
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
}

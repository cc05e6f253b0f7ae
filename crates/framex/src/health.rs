//! A health probe a container can run on itself: `GET /health` on the
//! instance's own port, answered or not within a timeout.
//!
//! Images built `FROM scratch` have no `curl`; the `framex health` command and
//! `reports-service --health` run this instead, as a Docker `HEALTHCHECK` or a
//! Kubernetes `exec` probe. It is a few lines of blocking std I/O on purpose:
//! a probe runs once and exits, and an HTTP client would start a runtime and a
//! connection pool to make one request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The most of an answer the probe reads: `/health` is a small document.
const MAX_ANSWER: u64 = 64 * 1024;

/// The address to probe for a server listening on `host:port`: an unspecified
/// host (`0.0.0.0`, `::`), which listens on every interface, is probed on
/// loopback.
pub fn local_address(host: &str, port: u16) -> String {
    match host.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "" => format!("127.0.0.1:{port}"),
        "::" => format!("[::1]:{port}"),
        host if host.contains(':') => format!("[{host}]:{port}"),
        host => format!("{host}:{port}"),
    }
}

/// Asks `http://ADDRESS/health` once. `Ok` holds the body of a 200 answer
/// (the instance's status, name and process id); `Err` says what went wrong,
/// naming the URL: no connection within `timeout`, no answer within it, or a
/// status other than 200 (503 while the instance drains).
pub fn probe(address: &str, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{address}/health");
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|error| format!("{url}: `{address}` is not an address: {error}"))?
        .collect();
    let mut last_error = format!("{url}: `{address}` names no address");
    for socket in addresses {
        match ask(socket, address, timeout) {
            Ok((200, body)) => return Ok(body),
            Ok((status, body)) => return Err(format!("{url} answered {status}: {}", body.trim())),
            Err(error) => last_error = format!("{url} (at {socket}): {error}"),
        }
    }
    Err(last_error)
}

fn ask(socket: SocketAddr, host: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_host_is_probed_on_loopback() {
        assert_eq!(local_address("0.0.0.0", 8080), "127.0.0.1:8080");
        assert_eq!(local_address("::", 8080), "[::1]:8080");
        assert_eq!(local_address("[::]", 8080), "[::1]:8080");
        assert_eq!(local_address("127.0.0.5", 9), "127.0.0.5:9");
        assert_eq!(local_address("::1", 9), "[::1]:9");
    }

    #[test]
    fn a_status_other_than_200_is_a_failure_that_names_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for (status, body) in [
                ("200 OK", "{\"status\":\"ok\"}"),
                ("503 Service Unavailable", "{\"status\":\"draining\"}"),
            ] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        let timeout = Duration::from_secs(5);
        assert_eq!(probe(&address, timeout).unwrap(), "{\"status\":\"ok\"}");
        let error = probe(&address, timeout).unwrap_err();
        assert_eq!(
            error,
            format!("http://{address}/health answered 503: {{\"status\":\"draining\"}}")
        );
        server.join().unwrap();
    }

    #[test]
    fn nobody_listening_is_a_failure_that_names_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = probe(&address, Duration::from_secs(5)).unwrap_err();
        assert!(
            error.starts_with(&format!("http://{address}/health (at {address}): ")),
            "{error}"
        );
    }
}

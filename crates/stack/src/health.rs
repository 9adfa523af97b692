//! Health probes, spoken in each component's own protocol over a fresh TCP connection.
//!
//! No client libraries on purpose: the probes are a few bytes each, and the runner then builds
//! in seconds instead of compiling librdkafka and a Redis client. Each probe has a short
//! timeout; callers poll probes until a deadline, never sleep for a fixed time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe never takes longer than this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The verdict of one probe: `Err` holds why the component is not healthy.
pub type Probe = std::result::Result<(), String>;

async fn connect(port: u16) -> std::result::Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

async fn timed(fut: impl Future<Output = Probe>) -> Probe {
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err("probe timed out".into()))
}

/// Redis answers `PING` with `+PONG` once it has loaded its AOF (before that: `-LOADING`).
pub async fn redis(port: u16) -> Probe {
    timed(async {
        let mut s = connect(port).await?;
        s.write_all(b"PING\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        if reply.starts_with("+PONG") {
            Ok(())
        } else {
            Err(format!("PING answered {:?}", reply.trim()))
        }
    })
    .await
}

/// A Kafka Metadata request (v4, still served by Kafka 4.x) that must list at least one
/// broker: the broker has started, registered with the controller and serves clients.
pub async fn kafka(port: u16) -> Probe {
    timed(async {
        let mut s = connect(port).await?;
        s.write_all(&metadata_request(7))
            .await
            .map_err(|e| e.to_string())?;
        let len = s.read_i32().await.map_err(|e| format!("metadata: {e}"))?;
        if !(8..=1 << 20).contains(&len) {
            return Err(format!("metadata response of {len} bytes"));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        let brokers = metadata_broker_count(&body, 7)?;
        if brokers > 0 {
            Ok(())
        } else {
            Err("metadata lists no broker yet".into())
        }
    })
    .await
}

/// Metadata v4 with header v1: no topics, no auto-creation.
fn metadata_request(correlation_id: i32) -> Vec<u8> {
    let client = b"stack-health";
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    body.extend_from_slice(&4i16.to_be_bytes()); // api version
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    body.extend_from_slice(&0i32.to_be_bytes()); // topics: empty array
    body.push(0); // allow_auto_topic_creation: false
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Reads correlation id, throttle time and the broker array's length of a v4 response.
fn metadata_broker_count(body: &[u8], correlation_id: i32) -> std::result::Result<i32, String> {
    let int = |at: usize| -> std::result::Result<i32, String> {
        body.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "short metadata response".to_string())
    };
    if int(0)? != correlation_id {
        return Err("metadata response for another request".into());
    }
    int(8)
}

/// `GET path` must answer 200 (the services' `/health/ready`, the gateway's `/health`).
pub async fn http_ok(port: u16, path: &str) -> Probe {
    timed(async {
        let mut s = connect(port).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status = String::from_utf8_lossy(&head);
        let status = status.lines().next().unwrap_or_default();
        match status.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            _ => Err(format!("GET {path} answered {status:?}")),
        }
    })
    .await
}

/// True if nothing listens on `port` and we may bind it.
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_request_is_framed() {
        let req = metadata_request(9);
        let len = i32::from_be_bytes([req[0], req[1], req[2], req[3]]) as usize;
        assert_eq!(len, req.len() - 4);
        assert_eq!(&req[4..8], &[0, 3, 0, 4]);
    }

    #[test]
    fn broker_count_is_read_after_header_and_throttle() {
        let mut body = 9i32.to_be_bytes().to_vec();
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(metadata_broker_count(&body, 9), Ok(1));
        assert!(metadata_broker_count(&body, 8).is_err());
        assert!(metadata_broker_count(&body[..6], 9).is_err());
    }

    #[tokio::test]
    async fn probes_fail_fast_on_a_closed_port() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(redis(port).await.is_err());
        assert!(kafka(port).await.is_err());
        assert!(http_ok(port, "/").await.is_err());
    }
}

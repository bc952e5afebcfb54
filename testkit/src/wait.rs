//! Free loopback ports and bounded waits: until something listens, until a condition
//! holds. Every wait has a bound and says what it waited for when the bound passes; none
//! asserts a speed (benchmarks measure speed).

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::Error;

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(50);

/// A free loopback port: bound, then released for a server to take. Another process may
/// take it in between; servers that bind it retry (see [`bind_retrying`]).
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("bind a loopback port on", "127.0.0.1", e))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("read the address of", "127.0.0.1", e))?;
    Ok(address.port())
}

/// Binds `address`, retrying for at most `timeout` while the port is still held (a
/// server that was just stopped, or a port from [`free_port`] not yet released).
pub async fn bind_retrying(
    address: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpListener, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(error) if Instant::now() >= deadline => {
                return Err(Error::io("bind", address, error));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits (at most `timeout`) until something accepts TCP connections on loopback `port`.
pub async fn wait_listening(port: u16, timeout: Duration) -> Result<(), Error> {
    let what = format!("something listening on 127.0.0.1:{port}");
    wait_until_async(&what, timeout, || async move {
        matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await,
            Ok(Ok(_))
        )
    })
    .await
}

/// Polls `done` until it holds or `timeout` passes; the error names `what`. Blocks the
/// thread: for fixtures outside an async runtime (pcscd, PostgreSQL's tools).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(not_in_time(what, timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// Polls the future `done` makes until it yields `true` or `timeout` passes; the error
/// names `what`.
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, done: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if eventually(timeout, done).await {
        Ok(())
    } else {
        Err(not_in_time(what, timeout))
    }
}

/// Polls the future `done` makes until it yields `true` or `timeout` passes; returns
/// whether it held, for tests that assert it (or its opposite) with their own message.
pub async fn eventually<F, Fut>(timeout: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if done().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn not_in_time(what: &str, timeout: Duration) -> Error {
    Error::NotInTime {
        what: what.to_owned(),
        seconds: timeout.as_secs(),
        hint: "",
    }
}

/// A multi-threaded tokio runtime with two workers (the machines the suites run on have
/// two cores), for tests that run their own runtime rather than `#[tokio::test]`.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "a tokio runtime", e))
}

//! A fault-injecting HTTP proxy in front of a real registry, on 127.0.0.1.
//!
//! Each request is matched against rules in order; the first rule that matches (method and a
//! path fragment) and still has uses left decides what happens: forward as is, answer with a
//! status of its own (5xx, 429 with `Retry-After`, a redirect), forward slowly, forward and
//! then reset the connection after some bytes, or forward with one body byte flipped.
//! Requests go upstream with `Connection: close`, so one connection carries one exchange and
//! the registry's `Location` headers (built from `Host`) keep pointing at the proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a rule does to a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: secs` when given) without forwarding.
    Status(u16, Option<u32>),
    /// Answer `307` to this URL prefix plus the request path, without forwarding.
    Redirect(String),
    /// Wait this long, then forward.
    Slow(Duration),
    /// Never answer (the connection stays open until the client gives up).
    Stall,
    /// Forward, but reset the connection after this many response bytes (headers included).
    ResetAfter(usize),
    /// Forward only this many request body bytes, then reset both connections.
    CutUpload(usize),
    /// Forward with the last byte of the response flipped.
    Corrupt,
    /// Answer `200` with this body (and the given content type) without forwarding.
    Body(&'static str, Vec<u8>),
}

/// One rule: `method` (or any) and a path fragment, used `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path: String,
    pub times: usize,
    pub fault: Fault,
}

/// A rule for `method` requests whose path contains `path`, used `times` times.
pub fn rule(method: &'static str, path: impl Into<String>, times: usize, fault: Fault) -> Rule {
    Rule {
        method: (method != "*").then_some(method),
        path: path.into(),
        times,
        fault,
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The request's headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The fault applied, if any.
    pub fault: Option<String>,
    /// The upstream's answer status, when the request was forwarded.
    pub status: Option<u16>,
}

impl Seen {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st, up) = (
            rules.clone(),
            seen.clone(),
            stop.clone(),
            upstream.to_string(),
        );
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let (r, s, up) = (r.clone(), s.clone(), up.clone());
                        std::thread::spawn(move || serve(c, &up, &r, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            host,
            rules,
            seen,
            stop,
        }
    }

    /// Replaces the rules.
    pub fn set(&self, rules: Vec<Rule>) {
        *self.rules.lock().unwrap() = rules;
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests a fault was applied to, as `METHOD path: fault`.
    pub fn faults(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|s| s.fault.map(|f| format!("{} {}: {f}", s.method, s.path)))
            .collect()
    }

    /// Rules whose uses were not all consumed (so a test knows every fault really fired).
    pub fn unused(&self) -> Vec<Rule> {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.times > 0 && r.times < 1000)
            .cloned()
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads up to the end of the request head; returns it and any body bytes read past it.
fn read_head(c: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        if buf.is_empty() && chunk[0] == 0x16 {
            // A TLS handshake (clients probe HTTPS first): answer as an HTTP server does.
            let _ = c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reset(c: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(c, Some(Duration::ZERO));
}

fn serve(mut c: TcpStream, upstream: &str, rules: &Mutex<Vec<Rule>>, seen: &Mutex<Vec<Seen>>) {
    let Some((head, early_body)) = read_head(&mut c) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method.is_none_or(|m| m == method) && path.contains(&r.path))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
    };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            fault: fault.as_ref().map(|f| format!("{f:?}")),
            status: None,
        });
        seen.len() - 1
    };
    let answer = |c: &mut TcpStream, status: u16, extra: &str, body: &[u8]| {
        let _ = write!(
            c,
            "HTTP/1.1 {status} Fault\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(body);
        let _ = c.flush();
        let _ = c.shutdown(Shutdown::Write);
        // Let the client finish sending before the socket goes away.
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let mut sink = [0u8; 65536];
        while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
    };
    match &fault {
        Some(Fault::Status(code, retry)) => {
            let extra = retry.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            return answer(&mut c, *code, &extra, b"{\"errors\":[]}");
        }
        Some(Fault::Redirect(to)) => {
            return answer(&mut c, 307, &format!("Location: {to}{path}\r\n"), b"");
        }
        Some(Fault::Body(media, body)) => {
            return answer(&mut c, 200, &format!("Content-Type: {media}\r\n"), body);
        }
        Some(Fault::Slow(d)) => std::thread::sleep(*d),
        Some(Fault::Stall) => {
            let mut sink = [0u8; 4096];
            while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        _ => {}
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return answer(&mut c, 502, "", b"");
    };
    let mut out = format!("{first}\r\n");
    for (k, v) in &headers {
        if k != "connection" {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    if up.write_all(out.as_bytes()).is_err() || up.write_all(&early_body).is_err() {
        return;
    }
    // Request body: copied as it comes until the client is done (or the cut).
    let (mut from_client, mut to_up) = (c.try_clone().unwrap(), up.try_clone().unwrap());
    let length: u64 = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let left = length.saturating_sub(early_body.len() as u64);
    if let Some(Fault::CutUpload(n)) = fault {
        let n = (n as u64)
            .min(length)
            .saturating_sub(early_body.len() as u64);
        let _ = std::io::copy(&mut (&mut from_client).take(n), &mut to_up);
        drop(from_client);
        reset(&c);
        reset(&up);
        return;
    }
    // Exactly the declared body, so no clone of the client socket outlives the exchange
    // (a reset needs the last descriptor closed).
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client.take(left), &mut to_up);
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 65536];
    let mut sent = 0usize;
    let mut first = true;
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if std::mem::take(&mut first) {
            let status = String::from_utf8_lossy(&buf[..n.min(12)])
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok());
            seen.lock().unwrap()[index].status = status;
        }
        match &fault {
            Some(Fault::ResetAfter(limit)) => {
                let take = n.min(limit.saturating_sub(sent));
                let _ = c.write_all(&buf[..take]);
                sent += take;
                if sent >= *limit {
                    reset(&c);
                    return;
                }
            }
            Some(Fault::Corrupt) => response.extend_from_slice(&buf[..n]),
            _ => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    if matches!(fault, Some(Fault::Corrupt)) {
        if let Some(last) = response.last_mut() {
            *last ^= 0x55;
        }
        let _ = c.write_all(&response);
    }
    let _ = c.shutdown(Shutdown::Write);
}

/// A plain HTTP server that answers every GET with `body` and records request headers: the
/// storage host a registry redirects blob downloads to.
pub struct BlobHost {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl BlobHost {
    /// Serves `body` on a fresh port.
    pub fn start(body: Vec<u8>) -> BlobHost {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                let (s, body) = (s.clone(), body.clone());
                std::thread::spawn(move || {
                    let mut c = c;
                    let Some((head, _)) = read_head(&mut c) else {
                        return;
                    };
                    let mut lines = head.split("\r\n");
                    let first = lines.next().unwrap_or("").to_string();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    s.lock().unwrap().push(Seen {
                        method: first.split(' ').next().unwrap_or("").into(),
                        path: first.split(' ').nth(1).unwrap_or("").into(),
                        headers,
                        fault: None,
                        status: None,
                    });
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = c.write_all(&body);
                });
            }
        });
        BlobHost { url, seen }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

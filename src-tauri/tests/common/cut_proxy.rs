//! A loopback TCP proxy in front of the API server whose "network" the test can cut: at once, or
//! when a request for a given path arrives (that request is never delivered). Cut, it closes every
//! open connection and drops every new one as soon as it is accepted: what a client sees when a
//! laptop leaves its Wi-Fi. Restored, it forwards again on the same address.
//!
//! It reads each request's head (and its `Content-Length` body) to see the path; a chunked body
//! ends the inspection of that connection, which is then forwarded as raw bytes. Answers are
//! forwarded as raw bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct CutProxy {
    /// `http://127.0.0.1:<port>`: what the app is pointed at.
    pub url: String,
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port` of the server, once [`CutProxy::forward_to`] said it.
    upstream: Mutex<String>,
    cut: AtomicBool,
    /// Cut the network when a request's path starts with this.
    cut_at: Mutex<Option<String>>,
    /// Every open connection (both ends), to close when the network is cut.
    open: Mutex<Vec<TcpStream>>,
}

impl CutProxy {
    /// A proxy on a free loopback port, forwarding nowhere until [`CutProxy::forward_to`].
    pub fn start() -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream: Mutex::new(String::new()),
            cut: AtomicBool::new(false),
            cut_at: Mutex::new(None),
            open: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if accepting.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || shared.serve(client));
            }
        });
        CutProxy { url, shared }
    }

    /// Forwards to `upstream` (`http://host:port`).
    pub fn forward_to(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() =
            upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
    }

    /// Cuts the network when a request for a path starting with `prefix` arrives.
    pub fn cut_at(&self, prefix: &str) {
        *self.shared.cut_at.lock().unwrap() = Some(prefix.to_string());
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Forwards again.
    pub fn restore(&self) {
        *self.shared.cut_at.lock().unwrap() = None;
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Shared {
    fn serve(&self, client: TcpStream) {
        let upstream = self.upstream.lock().unwrap().clone();
        let Ok(server) = TcpStream::connect(&upstream) else { return };
        {
            let mut open = self.open.lock().unwrap();
            open.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
        }
        let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
        let mut requests = BufReader::new(client);
        let mut to_server = server;
        while let Some(head) = read_head(&mut requests) {
            let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
            let cut_here = self.cut_at.lock().unwrap().as_deref().is_some_and(|prefix| path.starts_with(prefix));
            if cut_here || self.cut.load(Ordering::SeqCst) {
                self.cut();
                return;
            }
            if to_server.write_all(head.as_bytes()).is_err() {
                return;
            }
            let lower = head.to_ascii_lowercase();
            if lower.contains("transfer-encoding: chunked") {
                let _ = std::io::copy(&mut requests, &mut to_server);
                return;
            }
            let length = lower
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if std::io::copy(&mut (&mut requests).take(length), &mut to_server).is_err() {
                return;
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    }

    /// The network is gone: every open connection closed, new ones dropped.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// One request's head (request line and headers, up to the blank line), or `None` at the end.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
    }
}

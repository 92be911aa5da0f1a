//! A web server for crawler tests, on 127.0.0.1 only: std's TcpListener,
//! one thread per connection, a fixed site map (a function from the
//! request to the response), and a count of the requests per path (with
//! their times). A slow page blocks until the server is dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// A request as the site map sees it.
pub struct Request {
    /// Path and query, as sent ("/list?page=2").
    pub target: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
}

/// What the site map answers.
#[derive(Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Hold the response until the server is dropped.
    pub slow: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            slow: false,
        }
    }

    pub fn html(body: &str) -> Response {
        Response::new(200, "text/html; charset=utf-8", body)
    }

    pub fn redirect(to: &str) -> Response {
        Response {
            status: 302,
            headers: vec![("Location".into(), to.into())],
            ..Response::default()
        }
    }

    pub fn not_found() -> Response {
        Response::new(404, "text/plain", "not found")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub type Site = dyn Fn(&Request) -> Response + Send + Sync;

#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

pub struct Server {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<(String, Instant)>>>,
    stopping: Arc<AtomicBool>,
    gate: Arc<Gate>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(site: Arc<Site>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let (l, s, g) = (log.clone(), stopping.clone(), gate.clone());
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (site, l, g) = (site.clone(), l.clone(), g.clone());
                std::thread::spawn(move || serve(stream, &*site, &l, &g));
            }
        });
        Server {
            addr,
            log,
            stopping,
            gate,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received for `target` (path and query).
    pub fn count(&self, target: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == target)
            .count()
    }

    /// All requests, in order, with their times.
    pub fn requests(&self) -> Vec<(String, Instant)> {
        self.log.lock().unwrap().clone()
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (t, _) in self.log.lock().unwrap().iter() {
            *m.entry(t.clone()).or_default() += 1;
        }
        m
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        *self.gate.open.lock().unwrap() = true;
        self.gate.cv.notify_all();
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, site: &Site, log: &Mutex<Vec<(String, Instant)>>, gate: &Gate) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() || first.is_empty() {
        return;
    }
    let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    log.lock().unwrap().push((target.clone(), Instant::now()));
    let response = site(&Request { target, headers });
    if response.slow {
        let mut open = gate.open.lock().unwrap();
        while !*open {
            open = gate.cv.wait(open).unwrap();
        }
    }
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&response.body);
    let _ = stream.flush();
}

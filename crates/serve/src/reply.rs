//! Answers written to a client: a JSON body with its status, an API error,
//! or server-sent events written as HTTP chunks, flushed one event at a
//! time. Every answer carries the CORS headers the request's origin gets,
//! and ends with a line in the request log when there is one.

use super::api::ApiError;
use super::request_log::{Counts, Entry, RequestLog};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;
use tiny_http::{Header, Request, Response};

/// A request being answered.
pub struct Conn {
    req: Request,
    /// Headers every answer carries: CORS for this request's origin (none
    /// without `--cors`).
    headers: Vec<(String, String)>,
    log: Option<Arc<RequestLog>>,
    endpoint: String,
    started: Instant,
    pub counts: Counts,
}

impl Conn {
    pub fn new(req: Request, headers: Vec<(String, String)>, log: Option<Arc<RequestLog>>) -> Conn {
        let endpoint = req.url().split('?').next().unwrap_or("").to_string();
        Conn {
            req,
            headers,
            log,
            endpoint,
            started: Instant::now(),
            counts: Counts::default(),
        }
    }

    pub fn request(&self) -> &Request {
        &self.req
    }

    /// A header the answer will carry.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        &self.endpoint
    }

    /// Reads the body, at most `limit` bytes (413 beyond).
    pub fn body(&mut self, limit: u64) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        self.req
            .as_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::invalid(None, format!("cannot read the request body: {e}")))?;
        if body.len() as u64 > limit {
            return Err(ApiError::invalid(
                None,
                format!("the request body is larger than {} MiB", limit >> 20),
            )
            .with_status(413));
        }
        Ok(body)
    }

    pub fn json(self, status: u16, body: &str) {
        let mut response = Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json"));
        for (k, v) in &self.headers {
            response.add_header(header(k, v));
        }
        self.write_log(status);
        // A client that went away cannot be told anything.
        let _ = self.req.respond(response);
    }

    /// No body (a CORS preflight's answer).
    pub fn empty(self, status: u16) {
        let mut response = Response::empty(status);
        for (k, v) in &self.headers {
            response.add_header(header(k, v));
        }
        self.write_log(status);
        let _ = self.req.respond(response);
    }

    /// OpenAI's error body.
    pub fn error(self, e: &ApiError) {
        self.json(e.status, &e.body())
    }

    /// llama.cpp's error body.
    pub fn llama_error(self, e: &ApiError) {
        self.json(e.status, &e.llama_body())
    }

    /// Starts a `text/event-stream` answer.
    pub fn events(self) -> io::Result<SseStream> {
        let Conn {
            req,
            headers,
            log,
            endpoint,
            started,
            counts,
        } = self;
        let mut out = req.into_writer();
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nServer: cllm\r\n",
        );
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.flush()?;
        Ok(SseStream {
            out,
            log,
            endpoint,
            started,
            counts,
        })
    }

    fn write_log(&self, status: u16) {
        if let Some(log) = &self.log {
            log.write(&Entry::new(
                &self.endpoint,
                status,
                &self.counts,
                self.started,
                false,
            ));
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| unreachable!("header names and values here are ASCII"))
}

/// A `text/event-stream` answer: each event one HTTP chunk, flushed at once
/// so a client sees every token as it comes; a failed write means the
/// client went away.
pub struct SseStream {
    out: Box<dyn Write + Send>,
    log: Option<Arc<RequestLog>>,
    endpoint: String,
    started: Instant,
    pub counts: Counts,
}

impl SseStream {
    /// Sends `data: {data}\n\n`.
    pub fn send(&mut self, data: &str) -> io::Result<()> {
        let event = format!("data: {data}\n\n");
        let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
        chunk.extend_from_slice(event.as_bytes());
        chunk.extend_from_slice(b"\r\n");
        self.out.write_all(&chunk)?;
        self.out.flush()
    }

    /// Sends `data: [DONE]` (OpenAI's end of a stream) and ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        match self.send("[DONE]") {
            Ok(()) => self.end(),
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Ends the body (llama.cpp's streams send no `[DONE]`).
    pub fn end(mut self) -> io::Result<()> {
        let ended = self
            .out
            .write_all(b"0\r\n\r\n")
            .and_then(|_| self.out.flush());
        self.write_log(ended.is_err());
        ended
    }

    /// The client went away: logged as such.
    pub fn abandon(self) {
        self.write_log(true);
    }

    fn write_log(&self, cancelled: bool) {
        if let Some(log) = &self.log {
            log.write(&Entry::new(
                &self.endpoint,
                200,
                &self.counts,
                self.started,
                cancelled,
            ));
        }
    }
}

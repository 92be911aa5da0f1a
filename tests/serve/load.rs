//! Many clients at once: concurrent streams, disconnects, the full queue's
//! 429, and stopping a server with streams running.

use super::*;

/// A stream that runs until its client leaves.
fn endless() -> Value {
    json!({"prompt": "x", "max_tokens": 1_000_000, "temperature": 0, "stream": true})
}

#[test]
fn concurrent_streams_do_not_block_each_other_and_disconnects_cancel() {
    let server = start(closing_model(), 4, 4);
    let mut streams: Vec<Events> = (0..4)
        .map(|_| Events::open(server.addr(), "/v1/completions", &endless()))
        .collect();
    // Every stream delivers while all four are open.
    for round in 0..3 {
        for (i, s) in streams.iter_mut().enumerate() {
            assert_eq!(s.status, 200);
            let data = s.next().unwrap();
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(text_of(&v), "}", "stream {i} round {round}");
        }
    }
    assert_eq!(server.stats().active, 4);
    drop(streams);
    wait_for(&server, "4 cancelled streams", |s| {
        s.cancelled == 4 && s.active == 0
    });
    // The decoding threads are free again.
    let (status, _) = post(
        server.addr(),
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 2}),
    );
    assert_eq!(status, 200);
}

#[test]
fn a_full_queue_answers_429_and_frees_when_a_client_leaves() {
    let server = start(closing_model(), 1, 1);
    let mut running = Events::open(server.addr(), "/v1/completions", &endless());
    running.next().unwrap();
    wait_for(&server, "one active", |s| s.active == 1);
    // The second waits in the queue ...
    let mut waiting = connect(server.addr());
    send_request(
        &mut waiting,
        "POST",
        "/v1/completions",
        &endless().to_string(),
        "",
    );
    wait_for(&server, "one queued", |s| s.queued == 1);
    // ... and the third finds it full.
    let (status, v) = post(server.addr(), "/v1/completions", &json!({"prompt": "x"}));
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(server.stats().rejected, 1);
    // The running client leaves: its generation stops and the waiting one starts.
    drop(running);
    let mut waiting = BufReader::new(waiting);
    let (status, _) = read_head(&mut waiting);
    assert_eq!(status, 200);
    wait_for(&server, "the first cancelled, the second running", |s| {
        s.cancelled == 1 && s.active == 1 && s.queued == 0
    });
    drop(waiting);
    wait_for(&server, "both cancelled", |s| {
        s.cancelled == 2 && s.active == 0
    });
}

#[test]
fn stopping_the_server_ends_running_streams() {
    let server = start(closing_model(), 1, 1);
    let mut running = Events::open(server.addr(), "/v1/completions", &endless());
    running.next().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.stop());
    });
    let stats = rx.recv_timeout(DEADLINE).expect("stop returns");
    assert_eq!((stats.active, stats.queued), (0, 0));
    // The stream is ended properly: a finish chunk, [DONE], end of body.
    let rest = running.collect();
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

//! Load driver of `benches/serve.sh` for a running `vmtool serve`:
//!   serve_bench URL PID MAILBOX PIN MESSAGES
//! 1. the list request of the box's INBOX (MESSAGES messages): latency over
//!    loopback on a kept-alive connection, i.e. the server's time;
//! 2. 50 sessions streaming audio at once for 10 s (each its own login and
//!    connection, each fetching whole WAVs of different messages);
//! 3. the server's memory (VmRSS, VmHWM) idle, after 1 and after 2.

use std::time::{Duration, Instant};

fn rss(pid: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
            .unwrap_or_default()
    };
    format!("VmRSS {} kB, VmHWM {} kB", get("VmRSS:"), get("VmHWM:"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn login(a: &ureq::Agent, url: &str, mailbox: &str, pin: &str) -> String {
    let r = a
        .post(format!("{url}/login"))
        .send_form([("mailbox", mailbox), ("pin", pin)])
        .expect("login");
    assert_eq!(r.status(), 303, "login refused");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, pid, mailbox, pin, n] = args.as_slice() else {
        eprintln!("usage: serve_bench URL PID MAILBOX PIN MESSAGES");
        std::process::exit(2);
    };
    let n: usize = n.parse().unwrap();
    println!("server idle after start: {}", rss(pid));

    let a = agent();
    let cookie = login(&a, url, mailbox, pin);
    let list = |a: &ureq::Agent| {
        let mut r = a
            .get(format!("{url}/api/messages?folder=INBOX"))
            .header("Cookie", &cookie)
            .call()
            .unwrap();
        let body = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap();
        assert_eq!(r.status(), 200);
        body
    };
    let body = list(&a);
    let rows: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), n, "messages listed");
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        list(&a);
        times.push(t.elapsed());
    }
    println!(
        "list of {n} messages ({} bytes of JSON), 50 requests: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        body.len(),
        pct(&mut times, 0.5),
        pct(&mut times, 0.95),
        pct(&mut times, 1.0)
    );
    println!("server after the list requests: {}", rss(pid));

    const SESSIONS: usize = 50;
    let run_for = Duration::from_secs(10);
    let start = Instant::now();
    let workers: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (url, mailbox, pin) = (url.clone(), mailbox.clone(), pin.clone());
            std::thread::spawn(move || {
                let a = agent();
                let cookie = login(&a, &url, &mailbox, &pin);
                let (mut bytes, mut lat) = (0u64, Vec::new());
                let mut k = i;
                while start.elapsed() < run_for {
                    let t = Instant::now();
                    let mut r = a
                        .get(format!("{url}/api/messages/INBOX/{}/audio", k % n))
                        .header("Cookie", &cookie)
                        .call()
                        .unwrap();
                    let b = r
                        .body_mut()
                        .with_config()
                        .limit(64 << 20)
                        .read_to_vec()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    assert_eq!(&b[..4], b"RIFF");
                    bytes += b.len() as u64;
                    lat.push(t.elapsed());
                    k += SESSIONS;
                }
                (bytes, lat)
            })
        })
        .collect();
    let (mut bytes, mut lat) = (0u64, Vec::new());
    for w in workers {
        let (b, l) = w.join().unwrap();
        bytes += b;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{SESSIONS} sessions streaming audio for {secs:.1} s: {} WAVs ({:.1}/s, {:.1} MB/s), per WAV median {:.0} ms, p95 {:.0} ms, max {:.0} ms, no error",
        lat.len(),
        lat.len() as f64 / secs,
        bytes as f64 / secs / 1e6,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.95),
        pct(&mut lat, 1.0)
    );
    std::thread::sleep(Duration::from_secs(1));
    println!("server 1 s after the streaming: {}", rss(pid));
    std::thread::sleep(Duration::from_secs(14));
    println!("server 15 s after the streaming: {}", rss(pid));
}

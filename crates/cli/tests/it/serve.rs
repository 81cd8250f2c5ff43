//! `sfbpatch serve` and `apply --serve`: the live dashboard over real HTTP (a minimal HTTP/1.1
//! client on a `TcpStream`), its JSON against docs/schema/, its safety (token, actions,
//! cross-site requests, escaping) and, with headless Chromium, the page following a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Scratch, bin, code, repo, stderr};

/// A `sfbpatch` process serving (`serve`, or `apply --serve`), ended when dropped.
struct Served {
    child: Child,
    /// Where to connect (loopback, whatever address it listens on).
    addr: SocketAddr,
    /// Its stderr after the address line, read on a thread.
    rest: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Starts `sfbpatch ARGS` in `dir` and waits for the line naming the address (`PREFIX`
    /// then `http://ADDR/`).
    fn start(dir: &Path, args: &[&str], prefix: &str) -> Served {
        let mut child = bin()
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sfbpatch starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sfbpatch {args:?} ended before naming its address:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(at) = line.find(prefix) {
                let url = &line[at + prefix.len()..];
                let addr = url
                    .strip_prefix("http://")
                    .and_then(|u| u.split('/').next())
                    .unwrap_or_else(|| panic!("no address in {line:?}"));
                let mut addr: SocketAddr = addr.parse().expect("an address");
                if addr.ip().is_unspecified() {
                    addr.set_ip([127, 0, 0, 1].into());
                }
                break addr;
            }
        };
        let (tx, rest) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served { child, addr, rest }
    }

    fn serve(s: &Scratch, extra: &[&str]) -> Served {
        let mut args = vec!["serve", "--state", "state.db", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        Served::start(s.path(), &args, "on ")
    }

    /// Waits for the process to end; its exit code and the rest of its stderr.
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sfbpatch did not end in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut rest = String::new();
        while let Ok(line) = self.rest.recv_timeout(Duration::from_secs(2)) {
            rest.push_str(&line);
            rest.push('\n');
        }
        (status.code().expect("exited"), rest)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request, `Connection: close`, and the whole answer.
fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    try_http(addr, method, target, headers).expect("an answer")
}

/// [`http`], or the error of a server that is not (or no longer) there.
fn try_http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Ok(Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

fn get(addr: SocketAddr, target: &str) -> Answer {
    http(addr, "GET", target, &[])
}

fn json(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.headers.contains("content-type: application/json"),
        "{}",
        a.headers
    );
    serde_json::from_str(&a.body).expect("JSON")
}

/// Reads server-sent events from `/api/runs/ID/events` until the stream ends or `limit` passes;
/// each `snapshot` event's JSON, with when it arrived.
fn snapshots(addr: SocketAddr, run: i64, limit: Duration) -> Vec<(Instant, Value)> {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        c,
        "GET /api/runs/{run}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut parsed = 0;
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut ended = false;
    while Instant::now() < deadline && !ended {
        match c.read(&mut chunk) {
            Ok(0) => ended = true,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("event stream: {e}"),
        }
        // Events are `event: snapshot\ndata: {...}\n\n`; the body is chunked, so look for
        // the data lines themselves.
        let text = String::from_utf8_lossy(&all[parsed..]).into_owned();
        let mut consumed = 0;
        while let Some(at) = text[consumed..].find("data: {") {
            let start = consumed + at + "data: ".len();
            let Some(end) = text[start..].find('\n') else {
                break;
            };
            match serde_json::from_str(&text[start..start + end]) {
                Ok(v) => out.push((Instant::now(), v)),
                Err(_) => break,
            }
            consumed = start + end;
        }
        parsed += consumed;
        // The last chunk of a chunked body: the server ended the stream.
        ended |= all.ends_with(b"\r\n0\r\n\r\n");
    }
    out
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = repo().join("docs/schema").join(name);
    let text = std::fs::read_to_string(&path).expect("schema");
    jsonschema::draft202012::new(&serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// A lab of the demo topology (speed `speed`, 0 for instant) with `faults`.
fn lab(s: &Scratch, speed: &str, faults: &str) {
    s.write("faults.toml", faults);
    s.lab_init("lab", &["--speed", speed, "--faults", "faults.toml"]);
}

const SE1: &str = "se1.dublin.demo.example";
const SE2: &str = "se2.dublin.demo.example";
const FE21: &str = "fe21.berlin.demo.example";
/// How long SE1's whole procedure takes on a lab without variance, lab seconds: the lab's step
/// durations (docs/lab.md), 30.3 minutes.
const SE1_SECONDS: f64 = 1818.0;
const FAILED_INSTALL: &str = "[[fault]]\nserver = \"se2.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 1603\n";

fn apply(s: &Scratch, only: &[&str], extra: &[&str]) -> std::process::Output {
    let args = crate::common::apply_args(&["--lab", "lab"], only, extra);
    s.run(&args)
}

#[test]
fn an_address_other_than_loopback_needs_a_token_of_sixteen_characters() {
    let s = Scratch::new();
    let o = s.run(&["serve", "--state", "state.db", "--listen", "0.0.0.0:0"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "refusing to serve on 0.0.0.0:0 without a token: an address other than loopback \
             needs --token or --token-file [SFB-W001]"
        ),
        "{}",
        stderr(&o)
    );
    let o = s.run(&[
        "serve",
        "--state",
        "state.db",
        "--listen",
        "0.0.0.0:0",
        "--token",
        "short",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("[SFB-W002]"), "{}", stderr(&o));
    // A token file that cannot be read, or whose first line is empty, is named.
    s.write("empty.tok", "\n");
    for (file, said) in [
        ("missing.tok", "--token-file missing.tok: cannot read it"),
        (
            "empty.tok",
            "--token-file empty.tok: its first line is empty",
        ),
    ] {
        let o = s.run(&["serve", "--state", "state.db", "--token-file", file]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains(said), "{}", stderr(&o));
    }
    // Beside a run there is no token: loopback only, refused before anything is opened.
    let args = crate::common::apply_args(&["--lab", "lab"], &[], &["--serve", "0.0.0.0:8466"]);
    let o = s.run(&args);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("--serve 0.0.0.0:8466: the dashboard beside a run listens on loopback only"),
        "{}",
        stderr(&o)
    );
    assert!(!s.path().join("state.db").exists());
    // A valid configuration without a store is refused as other readers of the store are.
    let o = s.run(&["serve", "--state", "none.db", "--listen", "127.0.0.1:0"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!s.path().join("none.db").exists());
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    let s = Scratch::new();
    lab(&s, "0", "");
    assert_eq!(code(&apply(&s, &[SE1], &[])), 0);
    const TOKEN: &str = "0123456789abcdef+/";
    s.write("token", &format!("{TOKEN}\n"));
    let served = Served::start(
        s.path(),
        &[
            "serve",
            "--state",
            "state.db",
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            "token",
        ],
        "on ",
    );
    let addr = served.addr;
    for target in [
        "/",
        "/runs/1",
        "/runs/1/timeline",
        "/api/runs",
        "/api/runs/1",
        "/api/runs/1/events",
    ] {
        let a = get(addr, target);
        assert_eq!(a.status, 401, "{target} without a token");
        assert!(
            a.headers.contains("www-authenticate: bearer"),
            "{}",
            a.headers
        );
        let a = http(
            addr,
            "GET",
            target,
            &[("Authorization", "Bearer 0123456789abcdeX+/")],
        );
        assert_eq!(a.status, 401, "{target} with a wrong token");
    }
    let a = http(
        addr,
        "POST",
        "/api/runs/1/stop",
        &[("X-Sfbpatch-Action", "1")],
    );
    assert_eq!(a.status, 401, "an action without a token");
    let bearer = format!("Bearer {TOKEN}");
    let a = http(addr, "GET", "/api/runs", &[("Authorization", &bearer)]);
    assert_eq!(json(&a)["runs"][0]["id"], 1);
    // In the address (the page and the event stream): percent-encoded as a browser would.
    let a = get(addr, "/runs/1?token=0123456789abcdef%2B%2F");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<!DOCTYPE html>"));
    // The timeline, as the page asks for it (the header) and in the address.
    for a in [
        http(
            addr,
            "GET",
            "/runs/1/timeline",
            &[("Authorization", &bearer)],
        ),
        get(addr, "/runs/1/timeline?token=0123456789abcdef%2B%2F"),
    ] {
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.body.contains(&format!("data-server=\"{SE1}\"")),
            "{}",
            a.body
        );
    }
    // The address's token is for GET only.
    let a = http(
        addr,
        "POST",
        "/api/runs/1/stop?token=0123456789abcdef%2B%2F",
        &[("X-Sfbpatch-Action", "1")],
    );
    assert_eq!(a.status, 401);
}

#[test]
fn json_endpoints_follow_their_schemas_and_agree_with_status() {
    let s = Scratch::new();
    lab(&s, "0", FAILED_INSTALL);
    let o = apply(&s, &[SE1, SE2], &["--max-failures", "1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let served = Served::serve(&s, &[]);
    let runs_schema = schema("serve-runs.schema.json");
    let run_schema = schema("serve-run.schema.json");

    let runs = json(&get(served.addr, "/api/runs"));
    assert_valid(&runs_schema, &runs, "/api/runs");
    assert_eq!(runs["runs"][0]["state"], "failed");
    assert_eq!(runs["runs"][0]["servers"], 2);
    let mut broken = runs.clone();
    broken["runs"][0]["state"] = "exploded".into();
    assert!(
        !runs_schema.is_valid(&broken),
        "the schema checks run states"
    );

    let view = json(&get(served.addr, "/api/runs/1"));
    assert_valid(&run_schema, &view, "/api/runs/1");
    let mut broken = view.clone();
    broken["servers"][0]
        .as_object_mut()
        .unwrap()
        .remove("steps_done");
    assert!(
        !run_schema.is_valid(&broken),
        "the schema requires steps_done"
    );

    let status = s.status_json("state.db");
    assert_eq!(view["run"]["state"], status["run"]["state"]);
    let servers = fqdn_states(&view);
    assert_eq!(servers, fqdn_states(&status));
    assert_eq!(
        servers,
        [
            (SE1.into(), "succeeded".into()),
            (SE2.into(), "failed".into())
        ]
    );
    let failure = &view["failures"][0];
    assert_eq!(failure["server"], SE2);
    assert_eq!(failure["step"], "install-update");
    assert_eq!(failure["exit_code"], 1603);
    assert!(
        failure["output"].as_str().unwrap().contains("1603"),
        "{failure}"
    );
    // A Standard Edition server's pool has no Front End servers, and no quorum.
    let pool = crate::common::item(&view, "pools", "fqdn", SE1);
    assert_eq!(
        (
            &pool["front_ends"],
            &pool["front_ends_in_pool"],
            &pool["quorum_required"],
            &pool["quorum_among"],
            &pool["quorum_kept"]
        ),
        (
            &0.into(),
            &0.into(),
            &Value::Null,
            &Value::Null,
            &Value::Null
        ),
        "{pool}"
    );
    let se1 = &view["servers"][0];
    assert_eq!(se1["steps_done"], se1["steps_total"]);
    assert_eq!(se1["current_step"], Value::Null);
    assert_eq!(
        se1["outage_seconds"],
        status["servers"][0]["outage_seconds"]
    );
    // A finished run's stream gives its one snapshot and ends.
    let events = snapshots(served.addr, 1, Duration::from_secs(10));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_valid(&run_schema, &events[0].1, "snapshot event");
    assert_eq!(events[0].1, view);

    let a = get(served.addr, "/api/runs/9");
    assert_eq!((a.status, a.body.as_str()), (404, "run 9 does not exist\n"));
    let a = get(served.addr, "/api/runs/9/events");
    assert_eq!(a.status, 404);
}

/// Loads `/runs/1` and returns the page as served.
/// Each server of a document's `servers` (the dashboard's view, `status --format json`):
/// its FQDN and state, in order.
fn fqdn_states(doc: &Value) -> Vec<(String, String)> {
    doc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["fqdn"].as_str().unwrap().into(),
                v["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn page(addr: SocketAddr) -> String {
    let a = get(addr, "/runs/1");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.headers
            .contains("content-security-policy: default-src 'none'")
    );
    a.body
}

const SCRIPT_SITE: &str = "<script>document.title='pwned'</script><b>Dublin</b>";

/// A Standard Edition pool in a site whose name carries markup, patched on the lab.
fn script_site(s: &Scratch) {
    s.write(
        "inventory.toml",
        &format!(
            "[[site]]\nname = \"{SCRIPT_SITE}\"\n\n[[pool]]\nfqdn = \"se.lab.example.com\"\nsite = \"{SCRIPT_SITE}\"\nproduct = \"2019\"\nedition = \"standard\"\n"
        ),
    );
    let o = s.run(&["lab", "init", "lab", "--topology", "inventory.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&[
        "apply",
        "inventory.toml",
        "--package",
        "demo-package.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_topology_value_carrying_markup_reaches_the_page_only_as_data() {
    let s = Scratch::new();
    script_site(&s);
    let served = Served::serve(&s, &[]);
    let view = json(&get(served.addr, "/api/runs/1"));
    assert_eq!(view["servers"][0]["site"], SCRIPT_SITE);
    let html = page(served.addr);
    // The page's own two scripts, and nothing of the site's markup as markup.
    assert_eq!(html.matches("<script").count(), 2, "{html}");
    assert!(!html.contains("<b>Dublin"), "{html}");
    // The timeline the page places as markup carries none of it either.
    let a = get(served.addr, "/runs/1/timeline");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("data-server=\"se.lab.example.com\""),
        "{}",
        a.body
    );
    assert!(
        !a.body.contains("<script") && !a.body.contains("<b>"),
        "{}",
        a.body
    );
    assert!(
        html.contains(r"\u003cscript\u003edocument.title='pwned'\u003c/script\u003e\u003cb\u003eDublin\u003c/b\u003e"),
        "{html}"
    );
}

#[test]
fn actions_need_the_flag_the_header_and_this_site_and_name_who_asked() {
    let s = Scratch::new();
    lab(&s, "0", "");
    let o = apply(&s, &[SE1, SE2], &["--waves", "1", "--pause-after-canary"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let action = [("X-Sfbpatch-Action", "1")];
    {
        let served = Served::serve(&s, &[]);
        let a = http(served.addr, "POST", "/api/runs/1/approve", &action);
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "actions are off: start `sfbpatch serve` with --allow-actions\n"
        );
        // The page offers no action either.
        assert!(page(served.addr).contains("const ACTIONS = false;"));
    }
    let served = Served::serve(&s, &["--allow-actions", "--operator", "alice"]);
    let addr = served.addr;
    let origin = format!("http://{addr}");
    let refused: [(&str, Vec<(&str, &str)>); 4] = [
        // What a cross-site form can send: no custom header.
        ("an action needs the header X-Sfbpatch-Action: 1\n", vec![]),
        (
            "a cross-site request is refused (Origin is not this server)\n",
            vec![
                ("X-Sfbpatch-Action", "1"),
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "a cross-site request is refused\n",
            vec![("X-Sfbpatch-Action", "1"), ("Sec-Fetch-Site", "cross-site")],
        ),
        (
            "an action needs the header X-Sfbpatch-Action: 1\n",
            vec![("X-Sfbpatch-Action", "yes"), ("Origin", origin.as_str())],
        ),
    ];
    for (why, headers) in &refused {
        let a = http(addr, "POST", "/api/runs/1/approve", headers);
        assert_eq!((a.status, a.body.as_str()), (403, *why), "{headers:?}");
    }
    // GET does not act.
    assert_eq!(get(addr, "/api/runs/1/approve").status, 405);
    let view = json(&get(addr, "/api/runs/1"));
    assert_eq!(view["run"]["state"], "awaiting-approval");
    assert_eq!(view["run"]["awaiting_approval"], true);
    assert!(page(addr).contains("const ACTIONS = true;"));

    // Nothing above was recorded; stop is refused on a run that is not running.
    let a = http(
        addr,
        "POST",
        "/api/runs/1/stop",
        &[("X-Sfbpatch-Action", "1"), ("Origin", &origin)],
    );
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            409,
            "run 1 is awaiting-approval: there is nothing to stop\n"
        )
    );
    let a = http(
        addr,
        "POST",
        "/api/runs/1/approve",
        &[
            ("X-Sfbpatch-Action", "1"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = http(addr, "POST", "/api/runs/1/approve", &action);
    assert_eq!(a.status, 409, "approved once: {}", a.body);
    let o = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let approvals = &report["run"]["approvals"];
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals}");
    assert_eq!(approvals[0]["by"], "alice");
    assert_eq!(approvals[0]["wave"], 0);
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(
        code(&o),
        0,
        "the rest runs after the approval: {}",
        stderr(&o)
    );
}

/// A lab where the demo's Standard Edition servers take long enough, at `speed`, to be seen
/// while they run.
fn slow_lab(s: &Scratch, faults: &str) {
    lab(s, "240", faults);
}

#[test]
fn a_stop_asked_on_the_dashboard_stops_the_run_at_its_next_step_boundary() {
    let s = Scratch::new();
    slow_lab(&s, "");
    let args = crate::common::apply_args(
        &["--lab", "lab"],
        &[SE1, SE2],
        &["--max-parallel", "1", "--serve", "127.0.0.1:0"],
    );
    let run = Served::start(s.path(), &args, "live dashboard: ");
    let served = Served::serve(&s, &["--allow-actions", "--operator", "alice"]);
    // Wait until the first server is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = json(&get(served.addr, "/api/runs/1"));
        if view["servers"][0]["steps_done"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not start: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The run's own dashboard serves the same run.
    assert_eq!(json(&get(run.addr, "/api/runs"))["runs"][0]["id"], 1);
    let a = http(
        served.addr,
        "POST",
        "/api/runs/1/stop",
        &[("X-Sfbpatch-Action", "1")],
    );
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "asked run 1 to stop at its next step boundary\n")
    );
    let (exit, err) = run.wait(Duration::from_secs(120));
    assert_eq!(exit, 4, "interrupted:\n{err}");
    assert!(
        err.contains("interrupted (alice asked the run to stop): no new server starts"),
        "{err}"
    );
    let status = s.status_json("state.db");
    assert_eq!(status["run"]["state"], "interrupted");
    // The second server, which waited for the first one's outage slot, never went out of
    // service: it stays in service at its outage gate, for `resume`.
    assert_eq!(status["servers"][1]["state"], "running", "{status}");
    assert_eq!(
        status["servers"][1]["outage_started_at"],
        Value::Null,
        "{status}"
    );
    let o = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let asked: Vec<&Value> = report["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "stop-requested")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["operator"], "alice");
    // The stop was for that controller: `resume` carries the run to its end.
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s.status_json("state.db")["run"]["state"], "succeeded");
}

#[test]
fn the_event_stream_sends_a_snapshot_within_a_second_of_each_commit() {
    let s = Scratch::new();
    slow_lab(&s, FAILED_INSTALL);
    let args = crate::common::apply_args(
        &["--lab", "lab"],
        &[SE1, SE2],
        &["--max-failures", "1", "--serve", "127.0.0.1:0"],
    );
    let run = Served::start(s.path(), &args, "live dashboard: ");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(run.addr, "/api/runs").body.contains("\"runs\":[]") {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The dashboard beside the run ends with it; a `serve` of its own follows it to the end.
    let served = Served::serve(&s, &[]);
    // When each journal record was first readable through the store (a fresh GET every
    // 100 ms), beside the event stream.
    let addr = served.addr;
    let reader = std::thread::spawn(move || {
        let mut seen: Vec<(i64, Instant)> = Vec::new();
        loop {
            // The server ends with the run's process.
            let Ok(a) = try_http(addr, "GET", "/api/runs/1", &[]) else {
                return seen;
            };
            let v: Value = serde_json::from_str(&a.body).unwrap();
            let seq = v["seq"].as_i64().unwrap();
            if seen.last().is_none_or(|(s, _)| *s < seq) {
                seen.push((seq, Instant::now()));
            }
            if v["run"]["state"] == "failed" {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let events = snapshots(served.addr, 1, Duration::from_secs(120));
    let seen = reader.join().expect("the reader");
    let (exit, err) = run.wait(Duration::from_secs(60));
    assert_eq!(exit, 1, "{err}");
    assert!(events.len() >= 5, "{} snapshots", events.len());
    let seqs: Vec<i64> = events
        .iter()
        .map(|(_, v)| v["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    // Each record's snapshot arrived within about a second of the record being readable:
    // the stream reads the store every half second.
    let mut late = Vec::new();
    for (seq, at) in &seen {
        let arrived = events
            .iter()
            .find(|(_, v)| v["seq"].as_i64().unwrap() >= *seq)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no snapshot shows record {seq}"));
        let lag = arrived.saturating_duration_since(*at);
        if lag > Duration::from_millis(1200) {
            late.push((seq, lag));
        }
    }
    assert!(
        late.is_empty(),
        "late snapshots: {late:?} of {}",
        seen.len()
    );
    let schema = schema("serve-run.schema.json");
    for (_, v) in &events {
        assert_valid(&schema, v, "snapshot");
    }
    // What the stream showed grew as the run went on, and its last snapshot is the end state.
    let done = |v: &Value| v["servers"][0]["steps_done"].as_u64().unwrap();
    assert!(done(&events[0].1) < done(&events.last().unwrap().1));
    let last = &events.last().unwrap().1;
    let status = s.status_json("state.db");
    assert_eq!(last["run"]["state"], "failed");
    assert_eq!(last["run"]["state"], status["run"]["state"]);
    for (i, server) in status["servers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(last["servers"][i]["fqdn"], server["fqdn"]);
        assert_eq!(last["servers"][i]["state"], server["state"]);
        assert_eq!(
            last["servers"][i]["outage_seconds"],
            server["outage_seconds"]
        );
    }
}

fn chromium() -> Option<PathBuf> {
    super::report::chromium()
}

/// Headless Chromium on `url` with `args`, within 180 seconds; its stdout.
fn run_chromium(browser: &Path, args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium: {status}");
    reader.join().expect("stdout")
}

/// The text of every element with `attr="value"` (a row), tags removed, entities kept.
fn row<'d>(dom: &'d str, attr: &str, value: &str) -> &'d str {
    let start = dom
        .find(&format!("{attr}=\"{value}\""))
        .unwrap_or_else(|| panic!("no {attr}={value} in the page"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The markup inside `<section id="ID">`.
fn section<'d>(dom: &'d str, id: &str) -> &'d str {
    let open = format!("<section id=\"{id}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no section {id} in the page"))
        + open.len();
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in row.split("<td").skip(1) {
        let inner = part.split_once('>').map_or("", |(_, r)| r);
        let mut text = String::new();
        let mut in_tag = false;
        for c in inner.split("</td>").next().unwrap_or("").chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        out.push(text);
    }
    out
}

/// Drives headless Chromium to a run's page twice while `apply` runs at real-time speed: the
/// first load shows it under way; the second stays on the page, which follows the run by its
/// event stream until the run ends, and then shows the store's end state (servers, outcomes,
/// pool impact). A screenshot of the finished run with its failure is kept in the target
/// folder (`serve-dashboard.png`).
#[test]
#[ignore = "needs chromium: scripts/test installs it"]
fn the_page_follows_a_run_live_in_headless_chromium() {
    let Some(browser) = sfbpatch_testkit::need(
        chromium(),
        "chromium is not installed (scripts/chromium.sh, run by scripts/test, installs it)",
    ) else {
        return;
    };
    let s = Scratch::new();
    slow_lab(&s, FAILED_INSTALL);
    let args = crate::common::apply_args(
        &["--lab", "lab"],
        &[
            "fe21.berlin.demo.example",
            "fe22.berlin.demo.example",
            "sqlbe2.berlin.demo.example",
            SE1,
            SE2,
        ],
        &["--max-failures", "1"],
    );
    let mut apply = bin()
        .current_dir(s.path())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while code(&s.run(&["status", "--state", "state.db", "--format", "json"])) != 0 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = Served::serve(&s, &[]);
    let url = format!("http://{}/runs/1", served.addr);
    std::thread::sleep(Duration::from_secs(2));
    let first = run_chromium(&browser, &["--dump-dom"], &url);
    assert!(
        first.contains("id=\"run-state\" class=\"state s-running\">running<"),
        "{first}"
    );
    // Stays on the page until its event stream ends with the run.
    let second = run_chromium(
        &browser,
        &["--dump-dom", "--virtual-time-budget=600000"],
        &url,
    );
    let exit = apply.wait().expect("apply ends");
    assert_eq!(exit.code(), Some(1));
    assert!(
        second.contains("live · updated"),
        "the event stream updated the page"
    );
    assert!(
        second.contains("id=\"run-state\" class=\"state s-failed\">failed<"),
        "{second}"
    );
    assert_ne!(
        cells(row(&first, "data-server", SE1)),
        cells(row(&second, "data-server", SE1))
    );

    // The end state as the store has it.
    let status = s.status_json("state.db");
    for server in status["servers"].as_array().unwrap() {
        let fqdn = server["fqdn"].as_str().unwrap();
        let shown = cells(row(&second, "data-server", fqdn));
        assert_eq!(shown[0], fqdn);
        assert_eq!(
            shown[4],
            server["state"].as_str().unwrap(),
            "{fqdn}: {shown:?}"
        );
        let total = server["steps"].as_array().unwrap().len();
        let done = server["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| st["state"] == "succeeded" || st["state"] == "not-applicable")
            .count();
        assert_eq!(shown[6], format!("{done} of {total}"), "{fqdn}");
        if let Some(o) = server["outage_seconds"].as_f64() {
            let o = o.round() as u64;
            assert!(
                shown[7].contains(&format!("{}:{:02}", o / 60, o % 60)),
                "{fqdn}: {shown:?} against {o} s"
            );
        }
    }
    let o = s.run(&["report", "--state", "state.db", "--format", "json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    for pool in report["pools"].as_array().unwrap() {
        let fqdn = pool["fqdn"].as_str().unwrap();
        let shown = cells(row(&second, "data-pool", fqdn));
        let minutes = |s: f64| format!("{:.1} min", s / 60.0);
        assert_eq!(
            shown[2],
            minutes(pool["unavailable_seconds"].as_f64().unwrap())
        );
        assert_eq!(
            shown[3],
            minutes(pool["resiliency_seconds"].as_f64().unwrap())
        );
        // At the end every Front End server is back in service: fepool2 has both of its two
        // in the run, and needs one of them; the Standard Edition servers' pools have none.
        if fqdn == "fepool2.berlin.demo.example" {
            assert_eq!(
                shown[4],
                format!(
                    "Front End 2/2 in service · quorum 1 · patched {} of 2 in the run",
                    pool["front_ends_patched"]
                )
            );
        } else {
            assert_eq!(pool["front_ends_in_pool"], json!([]), "{fqdn}");
            assert_eq!(shown[4], "none", "{fqdn}");
        }
    }
    assert!(second.contains(&format!("data-failure=\"{SE2}\"")));
    assert!(second.contains("exit code 1603"));
    // The timeline as the report draws it, loaded after the last snapshot: a row per server.
    let timeline = section(&second, "timeline");
    assert!(timeline.contains("<h2>Timeline</h2>"), "{timeline}");
    for server in status["servers"].as_array().unwrap() {
        let fqdn = server["fqdn"].as_str().unwrap();
        assert!(
            timeline.contains(&format!(
                "data-server=\"{fqdn}\" data-state=\"{}\"",
                server["state"].as_str().unwrap()
            )),
            "{fqdn} in {timeline}"
        );
    }
    assert!(first.contains("<section id=\"timeline\">"), "{first}");

    let target = repo().join("target");
    let shot = target.join("serve-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1100",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("screenshot of the dashboard: {}", shot.display());
}

/// In a real browser, a site name carrying markup is text in the page, and its script never
/// ran.
#[test]
#[ignore = "needs chromium: scripts/test installs it"]
fn a_topology_value_carrying_a_script_shows_as_text_in_headless_chromium() {
    let Some(browser) = sfbpatch_testkit::need(
        chromium(),
        "chromium is not installed (scripts/chromium.sh, run by scripts/test, installs it)",
    ) else {
        return;
    };
    let s = Scratch::new();
    script_site(&s);
    let served = Served::serve(&s, &[]);
    let dom = run_chromium(
        &browser,
        &["--dump-dom"],
        &format!("http://{}/runs/1", served.addr),
    );
    assert!(
        dom.contains(
            "<td class=\"site\">&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;b&gt;Dublin&lt;/b&gt;</td>"
        ),
        "{dom}"
    );
    assert!(
        dom.contains("<title>sfbpatch</title>"),
        "the script did not run"
    );
    assert!(!dom.contains("<b>Dublin</b>"));
}

// ---------------------------------------------------------------------------------------------
// The timeline

/// `/runs/{id}/timeline` is the HTML report's timeline of the run, as `sfbpatch report --html`
/// draws it: the contents of its timeline section, a row per server of the run in plan order.
#[test]
fn the_timeline_is_the_reports_drawing_of_the_run() {
    let s = Scratch::new();
    lab(&s, "0", FAILED_INSTALL);
    let o = apply(&s, &[FE21, SE1, SE2], &["--max-failures", "1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let served = Served::serve(&s, &[]);
    let a = get(served.addr, "/runs/1/timeline");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.headers.contains("content-type: text/html; charset=utf-8"),
        "{}",
        a.headers
    );
    assert!(
        a.headers
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        a.headers
    );
    assert!(a.body.starts_with("<h2>Timeline</h2>\n"), "{}", a.body);
    assert!(
        a.body.contains("minutes since the run started (lab time)"),
        "{}",
        a.body
    );
    // One row per server of the run, in plan order, with the state the store has.
    let status = s.status_json("state.db");
    let expected: Vec<String> = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sv| {
            format!(
                "<g class=\"row\" data-server=\"{}\" data-state=\"{}\">",
                sv["fqdn"].as_str().unwrap(),
                sv["state"].as_str().unwrap()
            )
        })
        .collect();
    let rows: Vec<String> = a
        .body
        .match_indices("<g class=\"row\" ")
        .map(|(at, _)| {
            let end = a.body[at..].find('>').unwrap();
            a.body[at..=at + end].to_string()
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(
        expected.iter().filter(|r| r.contains(SE2)).count(),
        1,
        "{expected:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(&format!("data-server=\"{SE2}\" data-state=\"failed\""))),
        "{rows:?}"
    );
    // The very drawing of the report's page (a lab run's times do not depend on a time zone).
    let o = s.run(&["report", "--state", "state.db", "--html", "out.html"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let html = std::fs::read_to_string(s.path().join("out.html")).expect("out.html");
    assert!(
        html.contains(&format!(
            "<section id=\"timeline\">\n{}</section>\n",
            a.body
        )),
        "the report's timeline differs from {}",
        a.body
    );
    // A run that does not exist.
    let a = get(served.addr, "/runs/9/timeline");
    assert_eq!((a.status, a.body.as_str()), (404, "run 9 does not exist\n"));
}

// ---------------------------------------------------------------------------------------------
// Front End servers against quorum

const ALONE_POOL: &str = "pool.lab.example.com";
/// The only Front End server of its pool.
const ALONE: &str = "fe.lab.example.com";
const TRIO_POOL: &str = "trio.lab.example.com";
/// The one Front End server of its pool of three in the run (the pool's second).
const TRIO_B: &str = "fe-b.lab.example.com";

/// A lab of two Enterprise pools: one of a single Front End server, one of three.
fn quorum_lab() -> Scratch {
    let s = Scratch::new();
    s.write(
        "pools.toml",
        r#"[[site]]
name = "Dublin"

[[pool]]
fqdn = "pool.lab.example.com"
site = "Dublin"
product = "2019"
machines = ["fe.lab.example.com"]
backend = "sql1.lab.example.com"

[[pool]]
fqdn = "trio.lab.example.com"
site = "Dublin"
product = "2019"
machines = ["fe-a.lab.example.com", "fe-b.lab.example.com", "fe-c.lab.example.com"]
backend = "sql2.lab.example.com"

[[sql]]
fqdn = "sql1.lab.example.com"
stores = ["user", "application", "central-management"]

[[sql]]
fqdn = "sql2.lab.example.com"
stores = ["user", "application"]
"#,
    );
    let o = s.run(&["lab", "init", "lab", "--topology", "pools.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    s
}

/// `apply` of the two Front End servers alone, one out of service at a time.
const QUORUM_APPLY: [&str; 15] = [
    "apply",
    "pools.toml",
    "--package",
    "demo-package.toml",
    "--lab",
    "lab",
    "--state",
    "state.db",
    "--yes",
    "--only",
    ALONE,
    "--only",
    TRIO_B,
    "--max-parallel",
    "1",
];

/// The controller killed (SIGKILL, at a journal append) while [`ALONE`] is out of service:
/// inside its outage window, its services stopped. The journal keeps it so: the run is
/// interrupted there. Found by bisecting the append the controller is killed at.
fn killed_with_the_lone_front_end_out() -> Scratch {
    use std::cmp::Ordering;
    // Where a run killed at append `n` stopped, against the state sought.
    let at = |n: u32| -> (Ordering, Scratch) {
        let s = quorum_lab();
        let o = bin()
            .current_dir(s.path())
            .args(QUORUM_APPLY)
            .env(crate::common::KILL_ENV, n.to_string())
            .output()
            .expect("apply runs");
        if o.status.code() == Some(0) {
            return (Ordering::Greater, s);
        }
        let st = s.run(&["status", "--state", "state.db", "--format", "json"]);
        if code(&st) != 0 {
            return (Ordering::Less, s);
        }
        let status: Value = serde_json::from_slice(&st.stdout).unwrap();
        let fe = crate::common::item(&status, "servers", "fqdn", ALONE);
        let stopped = fe["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["id"] == "stop-cs-services" && st["state"] == "succeeded");
        let order = if !fe["outage_ended_at"].is_null() || fe["state"] == "succeeded" {
            Ordering::Greater
        } else if fe["outage_started_at"].is_null() || !stopped {
            Ordering::Less
        } else {
            Ordering::Equal
        };
        (order, s)
    };
    let (mut low, mut high) = (1u32, 400u32);
    while low <= high {
        let n = low + (high - low) / 2;
        match at(n) {
            (Ordering::Equal, s) => return s,
            (Ordering::Less, _) => low = n + 1,
            (Ordering::Greater, _) => high = n - 1,
        }
    }
    panic!("no journal append leaves {ALONE} out of service");
}

/// The Front End servers and quorum of a pool of the view: in the run, in service, patched, in
/// the pool; quorum required, among, kept.
fn front_ends(view: &Value, pool: &str) -> Value {
    let p = crate::common::item(view, "pools", "fqdn", pool);
    [
        "front_ends",
        "front_ends_in_service",
        "front_ends_patched",
        "front_ends_in_pool",
        "quorum_required",
        "quorum_among",
        "quorum_kept",
    ]
    .iter()
    .map(|k| p[*k].clone())
    .collect()
}

/// A pool's Front End servers are counted against its quorum: all of the pool's, from the
/// topology, those outside the run in service. A pool of one Front End server has lost quorum
/// while that server is out of service (here a controller killed there: the run is
/// interrupted with it out); a pool of three keeps it with two in service. After `resume`,
/// both keep it.
#[test]
fn pools_show_their_front_end_servers_against_quorum() {
    let s = killed_with_the_lone_front_end_out();
    let served = Served::serve(&s, &[]);
    let view = json(&get(served.addr, "/api/runs/1"));
    assert_valid(&schema("serve-run.schema.json"), &view, "/api/runs/1");
    assert_eq!(view["run"]["state"], "interrupted");
    let alone = crate::common::item(&view, "servers", "fqdn", ALONE);
    assert_eq!(alone["outage_open"], true, "{alone}");
    assert_eq!(
        front_ends(&view, ALONE_POOL),
        json!([1, 0, 0, 1, 1, 1, false]),
        "{view}"
    );
    // The pool of three: fe-a and fe-c are not in the run; fe-b is not out (one server out
    // at a time), whether it went first or waits.
    let status = s.status_json("state.db");
    let b_patched = crate::common::item(&status, "servers", "fqdn", TRIO_B)["state"] == "succeeded";
    assert_eq!(
        front_ends(&view, TRIO_POOL),
        json!([1, 1, usize::from(b_patched), 3, 2, 3, true]),
        "{view}"
    );

    // `resume` patches both servers and brings them back. (The run then fails on its last
    // check: it left the pools' back ends out, so their databases are behind.)
    let o = s.run(&["resume", "--state", "state.db"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("database(s) behind their expected version"),
        "{}",
        stderr(&o)
    );
    let view = json(&get(served.addr, "/api/runs/1"));
    assert_valid(&schema("serve-run.schema.json"), &view, "/api/runs/1");
    assert_eq!(view["run"]["state"], "failed");
    assert_eq!(view["failures"], json!([]), "no server failed");
    assert_eq!(
        front_ends(&view, ALONE_POOL),
        json!([1, 1, 1, 1, 1, 1, true])
    );
    assert_eq!(
        front_ends(&view, TRIO_POOL),
        json!([1, 1, 1, 3, 2, 3, true])
    );
}

/// In a browser: a pool below quorum says so, in red; one that keeps it does not.
#[test]
#[ignore = "needs chromium: scripts/test installs it"]
fn a_pool_below_quorum_shows_red_in_headless_chromium() {
    let Some(browser) = sfbpatch_testkit::need(
        chromium(),
        "chromium is not installed (scripts/chromium.sh, run by scripts/test, installs it)",
    ) else {
        return;
    };
    let s = killed_with_the_lone_front_end_out();
    let status = s.status_json("state.db");
    let b_patched = crate::common::item(&status, "servers", "fqdn", TRIO_B)["state"] == "succeeded";
    let served = Served::serve(&s, &[]);
    let dom = run_chromium(
        &browser,
        &["--dump-dom"],
        &format!("http://{}/runs/1", served.addr),
    );
    let alone = row(&dom, "data-pool", ALONE_POOL);
    assert_eq!(
        cells(alone)[4],
        "Front End 0/1 in service · quorum 1 lost · patched 0 of 1 in the run"
    );
    assert!(
        alone.contains("<span class=\"quorum lost\" data-quorum=\"lost\">"),
        "{alone}"
    );
    let trio = row(&dom, "data-pool", TRIO_POOL);
    assert_eq!(
        cells(trio)[4],
        format!(
            "Front End 3/3 in service · quorum 2 · patched {} of 1 in the run",
            usize::from(b_patched)
        )
    );
    assert!(
        trio.contains("<span class=\"quorum\" data-quorum=\"kept\">"),
        "{trio}"
    );
    // The page's style makes a lost quorum red.
    assert!(dom.contains(".quorum.lost { color: var(--bad);"));
}

// ---------------------------------------------------------------------------------------------
// The maintenance window

/// 2026-12-04T21:00:00Z: the calendar instant virtual time 0 stands for in the window tests'
/// labs (their creation), so that a window's place on the lab's clock is known.
const LAB_EPOCH_MS: i64 = 1_796_418_000_000;

/// A lab of the demo topology created at [`LAB_EPOCH_MS`] (speed 0), and `apply` of `SE1`
/// with the daily window `window` (UTC); its exit code.
fn applied_in_window(s: &Scratch, window: &str) -> i32 {
    let text = std::fs::read_to_string(s.path().join("demo-topology.xml")).unwrap();
    let deployment = sfbpatch_topology::load(&text, "demo-topology.xml").expect("topology");
    let lab = sfbpatch_lab::init(
        &s.path().join("lab"),
        &deployment,
        &sfbpatch_lab::LabOptions {
            epoch_unix_ms: LAB_EPOCH_MS,
            ..sfbpatch_lab::LabOptions::default()
        },
    )
    .expect("lab");
    drop(lab);
    code(&apply(
        s,
        &[SE1],
        &["--window", window, "--timezone", "UTC"],
    ))
}

/// `run.window` of the run's view: spec, opens, closes, open, remaining.
fn window_of(view: &Value) -> (Value, f64, f64, bool, f64) {
    let w = &view["run"]["window"];
    (
        w["spec"].clone(),
        w["opens_at_seconds"].as_f64().unwrap(),
        w["closes_at_seconds"].as_f64().unwrap(),
        w["open"].as_bool().unwrap(),
        w["remaining_seconds"].as_f64().unwrap(),
    )
}

/// The window in force or next, on the lab's clock (the lab created at 21:00 UTC): tonight's
/// 22:00-05:00 opens an hour after the run's creation and closes eight hours after it; the run
/// waits for it, patches the server and ends inside it, with the rest of the window left. A
/// window of ten minutes at 23:00 that nothing fits in has not opened when the run ends at
/// once: all of it remains.
#[test]
fn the_maintenance_window_is_placed_on_the_labs_clock_with_what_remains() {
    let s = Scratch::new();
    assert_eq!(applied_in_window(&s, "22:00-05:00"), 0);
    let served = Served::serve(&s, &[]);
    let view = json(&get(served.addr, "/api/runs/1"));
    assert_valid(&schema("serve-run.schema.json"), &view, "/api/runs/1");
    let elapsed = view["run"]["elapsed_seconds"].as_f64().unwrap();
    let started = crate::common::item(&s.status_json("state.db"), "servers", "fqdn", SE1)["steps"]
        [0]["started_at"]
        .as_f64()
        .unwrap();
    // SE1 started when the window opened, and took its procedure's time.
    assert_eq!(started, 3600.0);
    assert_eq!(elapsed, 3600.0 + SE1_SECONDS);
    assert_eq!(
        window_of(&view),
        (
            "22:00-05:00 UTC".into(),
            3600.0,
            28800.0,
            true,
            28800.0 - 3600.0 - SE1_SECONDS
        )
    );
    drop(served);

    let s = Scratch::new();
    assert_eq!(applied_in_window(&s, "23:00-23:10"), 4);
    let served = Served::serve(&s, &[]);
    let view = json(&get(served.addr, "/api/runs/1"));
    assert_valid(&schema("serve-run.schema.json"), &view, "/api/runs/1");
    assert_eq!(view["run"]["state"], "interrupted");
    assert_eq!(view["run"]["elapsed_seconds"], 0.0);
    assert_eq!(
        window_of(&view),
        ("23:00-23:10 UTC".into(), 7200.0, 7800.0, false, 600.0)
    );
}

/// In a browser, the window and what remains of it, or when it opens.
#[test]
#[ignore = "needs chromium: scripts/test installs it"]
fn the_page_shows_the_maintenance_window_in_headless_chromium() {
    let Some(browser) = sfbpatch_testkit::need(
        chromium(),
        "chromium is not installed (scripts/chromium.sh, run by scripts/test, installs it)",
    ) else {
        return;
    };
    for (window, exit, shown) in [
        (
            "22:00-05:00",
            0,
            format!(
                "maintenance window 22:00-05:00 UTC open, {:.1} min left",
                (28800.0 - 3600.0 - SE1_SECONDS) / 60.0
            ),
        ),
        (
            "23:00-23:10",
            4,
            "maintenance window 23:00-23:10 UTC opens in 120.0 min".to_string(),
        ),
    ] {
        let s = Scratch::new();
        assert_eq!(applied_in_window(&s, window), exit);
        let served = Served::serve(&s, &[]);
        let dom = run_chromium(
            &browser,
            &["--dump-dom"],
            &format!("http://{}/runs/1", served.addr),
        );
        assert!(
            dom.contains(&format!("<div id=\"window\">{shown}</div>")),
            "{window}: {dom}"
        );
    }
}

//! AMI client against the fake AMI server, over real TCP on loopback.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ami_server::{FakeAmi, Mode, BANNER};
use vmtool::ami::{
    self, voicemail_main_running, voicemail_refresh, write_grants, write_mask, AmiClient, AmiError,
    AmiTarget, ConnectOptions, ManagerConf,
};

const T: Duration = Duration::from_secs(5);
const SECRET: &str = "s3cr:t@pw";

fn target(server: &FakeAmi, user: &str, secret: &str) -> AmiTarget {
    AmiTarget {
        host: "127.0.0.1".into(),
        port: server.port(),
        username: user.into(),
        secret: secret.into(),
    }
}

fn standard() -> FakeAmi {
    FakeAmi::start(&[
        ("monitor", "mon", "system,call"),
        ("vmtool", SECRET, "system,call,user"),
        ("reporter", "rep", "reporting"),
    ])
}

fn mailboxes(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, m)| (c.to_string(), m.to_string()))
        .collect()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "secret leaked in: {text}");
    assert!(
        !text.contains("s3cr"),
        "part of the secret leaked in: {text}"
    );
}

#[test]
fn login_and_logoff() {
    let server = standard();
    let client = AmiClient::connect(&target(&server, "VMTOOL", SECRET), T).unwrap();
    assert_eq!(client.version(), "13.0.0");
    assert!(BANNER.ends_with(client.version()));
    assert_no_secret(&format!("{client:?}"));
    client.logoff().unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let get = |i: usize, k: &str| {
        reqs[i]
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(get(0, "Action").as_deref(), Some("Login"));
    assert_eq!(get(0, "Username").as_deref(), Some("VMTOOL"));
    assert_eq!(get(0, "Secret").as_deref(), Some(SECRET));
    assert_eq!(get(0, "Events").as_deref(), Some("off"));
    assert!(get(0, "ActionID").is_some_and(|id| !id.is_empty()));
    assert_eq!(get(1, "Action").as_deref(), Some("Logoff"));
    assert_ne!(get(0, "ActionID"), get(1, "ActionID"));

    // A host name goes through the resolver (localhost may give ::1 first,
    // which this server does not listen on).
    let mut t = target(&server, "vmtool", SECRET);
    t.host = "localhost".into();
    AmiClient::connect(&t, T).unwrap().logoff().unwrap();
}

#[test]
fn wrong_secret_and_unknown_user() {
    let server = standard();
    for (user, secret) in [
        ("vmtool", "s3cr:t@pw-wrong"),
        ("nobody", SECRET),
        ("vmtool", ""),
    ] {
        let err = AmiClient::connect(&target(&server, user, secret), T).unwrap_err();
        assert!(
            matches!(&err, AmiError::Login { user: u, .. } if u == user),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("'{user}'")), "{text}");
        assert!(text.contains("Authentication failed"), "{text}");
        assert!(text.contains("manager.conf"), "{text}");
        assert_no_secret(&text);
        assert_no_secret(&format!("{err:?}"));
    }
}

#[test]
fn login_refusal_waits_like_asterisk() {
    // Asterisk sleeps a second before "Authentication failed".
    let server = standard();
    server.set_auth_delay(Duration::from_millis(1000));
    let start = Instant::now();
    let err =
        AmiClient::connect(&target(&server, "vmtool", "bad"), Duration::from_secs(3)).unwrap_err();
    assert!(matches!(err, AmiError::Login { .. }), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn refresh_two_mailboxes_in_order() {
    let server = standard();
    let boxes = mailboxes(&[("default", "1234"), ("sales", "200")]);
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes, T).unwrap();
    assert_eq!(results.len(), 2);
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(server.log(), boxes);
    // One connection, logged off at the end.
    assert_eq!(server.connections(), 1);
    let reqs = server.requests();
    let last = reqs.last().unwrap();
    assert!(last
        .iter()
        .any(|(k, v)| k == "Action" && v.trim() == "Logoff"));
}

#[test]
fn refresh_permission_denied() {
    let server = standard();
    let boxes = mailboxes(&[("default", "1234")]);
    let results = voicemail_refresh(&target(&server, "monitor", "mon"), &boxes, T).unwrap();
    let err = results[0].as_ref().unwrap_err();
    match err {
        AmiError::Refused { action, message } => {
            assert_eq!(action, "VoicemailRefresh");
            assert!(message.contains("Permission denied"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("write=user"), "{text}");
    assert!(server.log().is_empty());
}

#[test]
fn success_with_failure_message_is_detected() {
    let server = standard();
    server.set_refresh_failure(true);
    let boxes = mailboxes(&[("default", "1234"), ("default", "1235")]);
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes, T).unwrap();
    for r in &results {
        let err = r.as_ref().unwrap_err();
        assert!(matches!(err, AmiError::Refused { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("Success"), "{text}");
        assert!(text.contains("Refresh failed"), "{text}");
        assert!(text.contains("pollmailboxes"), "{text}");
    }
    // Both requests got through although each answer is followed by a stray
    // empty line (the embedded LF).
    assert_eq!(server.log(), boxes);

    // The stray line does not desynchronise the session.
    let mut client = AmiClient::connect(&target(&server, "vmtool", SECRET), T).unwrap();
    let r = client
        .action(
            "VoicemailRefresh",
            &[("Context", "default"), ("Mailbox", "1")],
        )
        .unwrap();
    assert!(r.is_success());
    assert_eq!(r.message(), Some("Refresh failed"));
    server.set_refresh_failure(false);
    let r = client
        .action(
            "VoicemailRefresh",
            &[("Context", "default"), ("Mailbox", "2")],
        )
        .unwrap();
    assert_eq!(r.message(), Some("Refresh sent"));
    let r = client.action("Ping", &[]).unwrap();
    assert_eq!(r.get("ping"), Some("Pong"));
    client.logoff().unwrap();

    // Any other Success text is refused too.
    server.set_refresh_reply(Some("Refresh queued"));
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes[..1], T).unwrap();
    assert!(results[0].is_err());
}

#[test]
fn events_are_skipped() {
    let server = standard();
    // With events on, Asterisk sends FullyBooted right after the login answer.
    let mut client = AmiClient::connect_with(
        &target(&server, "vmtool", SECRET),
        ConnectOptions {
            timeout: T,
            events: true,
        },
    )
    .unwrap();
    let r = client.action("Ping", &[]).unwrap();
    assert!(r.is_success());
    assert_eq!(r.get("Ping"), Some("Pong"));
    assert!(r.event().is_none());
    client.logoff().unwrap();

    // Unsolicited events, a stray empty line and a response with a foreign
    // ActionID before every answer.
    server.set_noise(true);
    let mut client = AmiClient::connect(&target(&server, "vmtool", SECRET), T).unwrap();
    let r = client.action("Ping", &[]).unwrap();
    assert_eq!(r.get("Ping"), Some("Pong"));
    let r = client
        .action(
            "VoicemailRefresh",
            &[("Context", "default"), ("Mailbox", "1234")],
        )
        .unwrap();
    assert_eq!(r.message(), Some("Refresh sent"));
    client.logoff().unwrap();
    let boxes = mailboxes(&[("a", "1"), ("b", "2")]);
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes, T).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    server.set_channels(&[("PJSIP/100-00000001", "VoiceMailMain")]);
    let names = voicemail_main_running(&target(&server, "vmtool", SECRET), T).unwrap();
    assert_eq!(names, ["PJSIP/100-00000001"]);
}

#[test]
fn unknown_action_and_bad_requests() {
    let server = standard();
    let mut client = AmiClient::connect(&target(&server, "vmtool", SECRET), T).unwrap();
    let r = client.action("VoicemailFrobnicate", &[]).unwrap();
    assert_eq!(r.response(), Some("Error"));
    assert!(r
        .message()
        .unwrap()
        .starts_with("Invalid/unknown command: VoicemailFrobnicate."));

    for (name, fields) in [
        ("Voicemail Refresh", vec![]),
        ("", vec![]),
        (
            "VoicemailRefresh",
            vec![("Context", "default\r\nAction: Logoff")],
        ),
        ("VoicemailRefresh", vec![("Mailbox", "12\n34")]),
        ("VoicemailRefresh", vec![("ActionID", "mine")]),
        ("VoicemailRefresh", vec![("Bad Key", "x")]),
    ] {
        let err = client.action(name, &fields).unwrap_err();
        assert!(
            matches!(err, AmiError::Invalid(_)),
            "{name:?} {fields:?}: {err:?}"
        );
    }
    let long = "9".repeat(2000);
    let err = client
        .action("VoicemailRefresh", &[("Mailbox", &long)])
        .unwrap_err();
    assert!(matches!(err, AmiError::Invalid(_)), "{err:?}");
    // Nothing of that reached the server; the session still works.
    let r = client.action("Ping", &[]).unwrap();
    assert!(r.is_success());
    client.logoff().unwrap();
    assert!(server.log().is_empty());

    // Empty context or mailbox would refresh everything: refused per entry.
    let boxes = mailboxes(&[("", "1234"), ("default", " "), ("default", "1234")]);
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes, T).unwrap();
    assert!(matches!(results[0], Err(AmiError::Invalid(_))));
    assert!(matches!(results[1], Err(AmiError::Invalid(_))));
    assert!(results[2].is_ok());
    assert_eq!(server.log(), mailboxes(&[("default", "1234")]));
}

#[test]
fn unknown_action_hint() {
    let e = AmiError::Refused {
        action: "VoicemailRefresh".into(),
        message: "Invalid/unknown command: VoicemailRefresh. Use Action: ListCommands to show available commands.".into(),
    };
    assert!(e.to_string().contains("app_voicemail"), "{e}");
    let e = AmiError::Refused {
        action: "CoreShowChannels".into(),
        message: "Permission denied".into(),
    };
    let text = e.to_string();
    assert!(
        text.contains("system") && text.contains("reporting"),
        "{text}"
    );
}

#[test]
fn voicemail_main_detection() {
    let server = standard();
    let t = target(&server, "vmtool", SECRET);
    assert!(voicemail_main_running(&t, T).unwrap().is_empty());
    server.set_channels(&[
        ("PJSIP/100-00000001", "VoiceMailMain"),
        ("PJSIP/101-00000002", "Dial"),
        ("PJSIP/102-00000003", "voicemailmain"),
        ("PJSIP/103-00000004", "VoiceMail"),
    ]);
    assert_eq!(
        voicemail_main_running(&t, T).unwrap(),
        ["PJSIP/100-00000001", "PJSIP/102-00000003"]
    );
    let mut client = AmiClient::connect(&t, T).unwrap();
    let (resp, items) = client
        .action_list("CoreShowChannels", &[], "CoreShowChannelsComplete")
        .unwrap();
    assert_eq!(resp.message(), Some("Channels will follow"));
    assert_eq!(items.len(), 4);
    assert_eq!(items[1].get("application"), Some("Dial"));
    client.logoff().unwrap();

    // reporting alone is enough for CoreShowChannels; user alone is not.
    let names = voicemail_main_running(&target(&server, "reporter", "rep"), T).unwrap();
    assert_eq!(names.len(), 2);
    let only_user = FakeAmi::start(&[("vm", "pw", "user")]);
    let err = voicemail_main_running(&target(&only_user, "vm", "pw"), T).unwrap_err();
    assert!(matches!(err, AmiError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("Permission denied"));
}

#[test]
fn silent_server_times_out() {
    let server = FakeAmi::start_mode(&[("vmtool", SECRET, "user")], Mode::Silent);
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = AmiClient::connect(&target(&server, "vmtool", SECRET), timeout).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, AmiError::Timeout { .. }), "{err:?}");
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(1500), "{took:?}");
    let text = err.to_string();
    assert!(text.contains("banner") && text.contains("300 ms"), "{text}");

    let start = Instant::now();
    let err = voicemail_refresh(
        &target(&server, "vmtool", SECRET),
        &mailboxes(&[("default", "1")]),
        timeout,
    )
    .unwrap_err();
    assert!(matches!(err, AmiError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < timeout + Duration::from_millis(1500));
}

#[test]
fn server_that_stops_answering_after_login() {
    let server = FakeAmi::start_mode(&[("vmtool", SECRET, "user")], Mode::MuteAfterLogin);
    let timeout = Duration::from_millis(400);
    let boxes = mailboxes(&[("default", "1"), ("default", "2")]);
    let start = Instant::now();
    let results = voicemail_refresh(&target(&server, "vmtool", SECRET), &boxes, timeout).unwrap();
    assert!(start.elapsed() < 2 * timeout + Duration::from_millis(1500));
    assert!(
        matches!(results[0], Err(AmiError::Timeout { .. })),
        "{results:?}"
    );
    // The second one is not sent on a connection in an unknown state.
    match &results[1] {
        Err(AmiError::Protocol(m)) => assert!(m.contains("not sent"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Login and the first refresh reached the server; nothing after it.
    assert!(crate::ami_server::wait_for(Duration::from_secs(2), || {
        server.requests().len() >= 2
    }));
    std::thread::sleep(Duration::from_millis(100));
    let actions: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            r.iter()
                .find(|(k, _)| k == "Action")
                .map_or(String::new(), |(_, v)| v.trim().to_string())
        })
        .collect();
    assert_eq!(actions, ["Login", "VoicemailRefresh"]);
    assert!(server.log().is_empty());
}

#[test]
fn connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = AmiTarget {
        host: "127.0.0.1".into(),
        port,
        username: "vmtool".into(),
        secret: SECRET.into(),
    };
    let start = Instant::now();
    let err = AmiClient::connect(&t, T).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, AmiError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("enabled = yes"), "{text}");
    assert_no_secret(&text);
    let err = voicemail_refresh(&t, &mailboxes(&[("default", "1")]), T).unwrap_err();
    assert!(matches!(err, AmiError::Connect { .. }));
}

#[test]
fn flood_and_foreign_servers() {
    let server = FakeAmi::start_mode(&[("vmtool", SECRET, "user")], Mode::Flood);
    let start = Instant::now();
    let err = AmiClient::connect(&target(&server, "vmtool", SECRET), T).unwrap_err();
    assert!(start.elapsed() < T, "{:?}", start.elapsed());
    match &err {
        AmiError::Protocol(m) => assert!(m.contains("longer than"), "{m}"),
        other => panic!("{other:?}"),
    }

    let server = FakeAmi::start_mode(&[("vmtool", SECRET, "user")], Mode::NotAmi);
    let err = AmiClient::connect(&target(&server, "vmtool", SECRET), T).unwrap_err();
    match &err {
        AmiError::Protocol(m) => assert!(m.contains("SSH-2.0"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A raw server that sends `script` after accepting, then closes.
fn raw_server(script: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(&script);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    port
}

#[test]
fn garbage_never_panics() {
    let scripts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"Asterisk Call Manager/13.0.0".to_vec(),
        b"Asterisk Call Manager/13.0.0\r\n\xff\xfe\x00garbage: \xc3\r\n\r\n".to_vec(),
        b"Asterisk Call Manager/13.0.0\r\nResponse: Success\r\nActionID: vmtool-".to_vec(),
        b"Asterisk Call Manager/13.0.0\r\n"
            .iter()
            .copied()
            .chain(b"X: y\r\n".repeat(5000))
            .collect(),
        b"\r\n\r\n\r\n".to_vec(),
    ];
    for script in scripts {
        let port = raw_server(script);
        let t = AmiTarget {
            host: "127.0.0.1".into(),
            port,
            username: "u".into(),
            secret: "p".into(),
        };
        let err = AmiClient::connect(&t, Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(
                err,
                AmiError::Protocol(_) | AmiError::Io { .. } | AmiError::Timeout { .. }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn target_parse_forms() {
    let p = |s: &str| AmiTarget::parse(s).unwrap();
    let t = p("pbx.example.com");
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.username.as_str(),
            t.secret.as_str()
        ),
        ("pbx.example.com", 5038, "", "")
    );
    let t = p("10.0.0.5:5039");
    assert_eq!((t.host.as_str(), t.port), ("10.0.0.5", 5039));
    let t = p("vmtool@localhost");
    assert_eq!(
        (t.username.as_str(), t.secret.as_str(), t.host.as_str()),
        ("vmtool", "", "localhost")
    );
    let t = p("vmtool:pw@127.0.0.1:5038");
    assert_eq!(
        (t.username.as_str(), t.secret.as_str(), t.port),
        ("vmtool", "pw", 5038)
    );
    // User up to the first ':', secret up to the last '@'.
    let t = p("admin:p@ss:w@rd@[::1]:6000");
    assert_eq!(t.username, "admin");
    assert_eq!(t.secret, "p@ss:w@rd");
    assert_eq!((t.host.as_str(), t.port), ("::1", 6000));
    assert_eq!(t.addr(), "[::1]:6000");
    let t = p("u:@[fe80::1%eth0]");
    assert_eq!((t.username.as_str(), t.secret.as_str()), ("u", ""));
    assert_eq!((t.host.as_str(), t.port), ("fe80::1%eth0", 5038));
    let t = p("[2001:db8::1]");
    assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", 5038));
    let t = p("::1");
    assert_eq!((t.host.as_str(), t.port), ("::1", 5038));
    let t = p("u:pw:with:colons@h");
    assert_eq!(
        (t.username.as_str(), t.secret.as_str(), t.host.as_str()),
        ("u", "pw:with:colons", "h")
    );

    for bad in [
        "",
        "vmtool:pw@",
        "host:",
        "host:0",
        "host:65536",
        "host:50x",
        "host:+80",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[abc]",
        "1:2:3",
        ":secret-only@host",
        "user name:pw@host",
        "u:pw\n@host",
        "ho st",
    ] {
        let err = AmiTarget::parse(bad).unwrap_err();
        assert!(matches!(err, AmiError::Config(_)), "{bad:?}: {err:?}");
        let text = err.to_string();
        assert!(!text.contains("secret-only"), "{text}");
        assert!(!text.contains("pw\n"), "{text}");
    }
}

#[test]
fn secrets_never_shown() {
    let t = AmiTarget::parse(&format!("vmtool:{SECRET}@[::1]:5038")).unwrap();
    assert_eq!(t.secret, SECRET);
    let dbg = format!("{t:?}");
    assert!(dbg.contains("***") && dbg.contains("vmtool"), "{dbg}");
    assert_no_secret(&dbg);
    assert_no_secret(&format!("{t:#?}"));
    assert_eq!(t.to_string(), "vmtool@[::1]:5038");
    // An address that fails to parse does not echo the secret.
    let err = AmiTarget::parse(&format!("vmtool:{SECRET}@host:99999")).unwrap_err();
    assert_no_secret(&err.to_string());
    assert_no_secret(&format!("{err:?}"));
    let mc = manager_conf("[general]\nenabled=yes\n[vmtool]\nsecret=s3cr:t@pw\nwrite=user\n");
    let conf = ManagerConf::load(&mc.path).unwrap();
    assert_no_secret(&format!("{conf:?}"));
    let t = AmiTarget::from_manager_conf(&mc.path).unwrap().unwrap();
    assert_no_secret(&format!("{t:?} {t}"));
}

struct Conf {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn manager_conf(text: &str) -> Conf {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manager.conf");
    std::fs::write(&path, text).unwrap();
    Conf { _dir: dir, path }
}

fn from_conf(text: &str) -> Option<AmiTarget> {
    AmiTarget::from_manager_conf(&manager_conf(text).path).unwrap()
}

#[test]
fn manager_conf_selection() {
    // The sample: disabled.
    assert_eq!(
        from_conf("[general]\nenabled = no\nport = 5038\nbindaddr = 0.0.0.0\n[admin]\nsecret=x\nwrite=all\n"),
        None
    );
    // No [general] at all: disabled (Asterisk's default).
    assert_eq!(from_conf("[admin]\nsecret=x\nwrite=all\n"), None);
    // enabled is ast_true, last line wins.
    for v in ["yes", "TRUE", "y", "t", "1", "On"] {
        assert!(
            from_conf(&format!(
                "[general]\nenabled={v}\n[a]\nsecret=x\nwrite=user\n"
            ))
            .is_some(),
            "{v}"
        );
    }
    assert_eq!(
        from_conf("[general]\nenabled=yes\nenabled=maybe\n[a]\nsecret=x\nwrite=user\n"),
        None
    );

    // bindaddr 0.0.0.0 → loopback; first user without write=user skipped.
    let t = from_conf(
        "[general]\nenabled = yes\nport = 5039\nbindaddr = 0.0.0.0\n\n\
         [monitor]\nsecret = mon\nread = all\nwrite = system,call\n\n\
         [nosecret]\nwrite = all\n\n\
         [vmtool]\nsecret = pw\nwrite = system,call,user\n",
    )
    .unwrap();
    assert_eq!(
        t,
        AmiTarget {
            host: "127.0.0.1".into(),
            port: 5039,
            username: "vmtool".into(),
            secret: "pw".into()
        }
    );

    // Defaults: port 5038, no bindaddr → 127.0.0.1; write=all qualifies.
    let t = from_conf("[general]\nenabled=yes\n[root]\nsecret=r\nwrite=all\n").unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.username.as_str()),
        ("127.0.0.1", 5038, "root")
    );

    // bindaddr forms.
    for (bind, host) in [
        ("::", "::1"),
        ("[::]:5038", "::1"),
        ("192.168.1.5", "192.168.1.5"),
        ("10.1.2.3:9999", "10.1.2.3"),
        ("[2001:db8::5]", "2001:db8::5"),
        ("::1", "::1"),
        ("not-an-address", "127.0.0.1"),
    ] {
        let t = from_conf(&format!(
            "[general]\nenabled=yes\nbindaddr={bind}\n[a]\nsecret=x\nwrite=user\n"
        ))
        .unwrap();
        assert_eq!(t.host, host, "{bind}");
    }
    // An invalid later bindaddr keeps the earlier valid one (Asterisk warns and keeps it).
    let t = from_conf(
        "[general]\nenabled=yes\nbindaddr=10.0.0.1\nbindaddr=bogus\n[a]\nsecret=x\nwrite=user\n",
    )
    .unwrap();
    assert_eq!(t.host, "10.0.0.1");

    // Ports as strtoul(…, 0) reads them; out of Asterisk's range is an error.
    let t = from_conf("[general]\nenabled=yes\nport=0x13BF\n[a]\nsecret=x\nwrite=user\n").unwrap();
    assert_eq!(t.port, 5055);
    for bad in ["80", "70000", "50x", "05038", "-5038", ""] {
        let mc = manager_conf(&format!(
            "[general]\nenabled=yes\nport={bad}\n[a]\nsecret=x\nwrite=user\n"
        ));
        let err = AmiTarget::from_manager_conf(&mc.path).unwrap_err();
        assert!(matches!(err, AmiError::Config(_)), "{bad}: {err:?}");
    }
    // …but irrelevant while disabled.
    assert_eq!(from_conf("[general]\nenabled=no\nport=80\n"), None);

    // Asterisk's write= parsing: case-sensitive, tokens not trimmed.
    assert_eq!(
        from_conf("[general]\nenabled=yes\n[a]\nsecret=x\nwrite=System,User\n"),
        None
    );
    assert_eq!(
        from_conf("[general]\nenabled=yes\n[a]\nsecret=x\nwrite=system, user\n"),
        None
    );
    assert!(from_conf("[general]\nenabled=yes\n[a]\nsecret=x\nwrite=user,call\n").is_some());

    // No usable user at all.
    assert_eq!(
        from_conf("[general]\nenabled=yes\n[a]\nsecret=x\nwrite=call\n[b]\nwrite=user\n"),
        None
    );

    // Templates are not users; their lines are inherited.
    let t = from_conf(
        "[general]\nenabled=yes\n\
         [base](!)\nsecret=tpl\nwrite=system,user\n\
         [inherits](base)\nread=all\n",
    )
    .unwrap();
    assert_eq!(
        (t.username.as_str(), t.secret.as_str()),
        ("inherits", "tpl")
    );
    let t = from_conf(
        "[general]\nenabled=yes\n\
         [base](!)\nwrite=user\n\
         [own](base)\nsecret=mine\nwrite=call\n\
         [later](base)\nsecret=l\n",
    )
    .unwrap();
    // [own] overrides write with its own line: only [later] qualifies.
    assert_eq!(t.username, "later");

    // Sections of one user (case-insensitive) merge; later lines win; [General] is general.
    let t = from_conf(
        "[General]\nenabled=yes\n\
         [vm]\nwrite=call\n\
         [other]\nsecret=o\nwrite=user\n\
         [VM]\nsecret=late\nwrite=user\n",
    )
    .unwrap();
    assert_eq!((t.username.as_str(), t.secret.as_str()), ("vm", "late"));

    // An empty secret is a secret (Asterisk compares it as such).
    let t = from_conf("[general]\nenabled=yes\n[a]\nsecret=\nwrite=user\n").unwrap();
    assert_eq!(t.secret, "");

    // #include works (Asterisk's dialect).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manager_custom.conf"),
        "[vmtool]\nsecret=inc ; comment\nwrite=user\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("manager.conf"),
        "[general]\nenabled=yes\n#include manager_custom.conf\n",
    )
    .unwrap();
    let t = AmiTarget::from_manager_conf(&dir.path().join("manager.conf"))
        .unwrap()
        .unwrap();
    assert_eq!((t.username.as_str(), t.secret.as_str()), ("vmtool", "inc"));

    // A missing file is an error that says so.
    let err = AmiTarget::from_manager_conf(&dir.path().join("nope.conf")).unwrap_err();
    assert!(
        matches!(&err, AmiError::Conf(c) if c.is_not_found()),
        "{err:?}"
    );
}

#[test]
fn manager_conf_details() {
    let mc = manager_conf(
        "[general]\nenabled=yes\nbindaddr=::\n\
         [mon]\nsecret=m\nwrite=system,reporting\n\
         [vm]\nsecret=v\nwrite=user\n",
    );
    let conf = ManagerConf::load(&mc.path).unwrap();
    assert!(conf.enabled);
    assert_eq!(conf.connect_host(), "::1");
    assert_eq!(conf.users.len(), 2);
    assert_eq!(conf.user_for(&["user"]).unwrap().name, "vm");
    assert_eq!(conf.user_for(&["system", "reporting"]).unwrap().name, "mon");
    assert!(conf.user("VM").unwrap().can_write("user"));
    let t = conf.target_for(&["reporting"]).unwrap().unwrap();
    assert_eq!((t.host.as_str(), t.username.as_str()), ("::1", "mon"));
}

#[test]
fn write_classes_like_get_perm() {
    assert!(write_grants("system,call,user", "user"));
    assert!(write_grants("user", "user"));
    assert!(write_grants("all", "user"));
    assert!(write_grants("call,all", "reporting"));
    assert!(!write_grants("system,call", "user"));
    assert!(!write_grants("User", "user"));
    assert!(!write_grants("system, user", "user"));
    assert!(!write_grants("users", "user"));
    assert!(!write_grants("", "user"));
    assert!(!write_grants("none", "user"));
    // ast_instring() quirks: a token before the last matches as a prefix…
    assert!(write_grants("us,call", "user"));
    assert!(write_grants(",call", "user"));
    // …the last one must match exactly; a trailing comma adds nothing.
    assert!(!write_grants("call,us", "user"));
    assert!(!write_grants("call,", "user"));
    assert_eq!(write_mask("user") & write_mask("system"), 0);
    assert_eq!(ami::class_mask("nonsense"), 0);
    assert_eq!(
        ami::required_classes("voicemailrefresh"),
        Some(&["user"][..])
    );
}

#[test]
fn resolve_with_manager_conf() {
    let mc = manager_conf(
        "[general]\nenabled=yes\nport=5040\n\
         [mon]\nsecret=m\nwrite=system\n\
         [vm]\nsecret=v\nwrite=user\n",
    );
    let p = Some(mc.path.as_path());
    // No spec: manager.conf.
    let t = AmiTarget::resolve(None, p).unwrap().unwrap();
    assert_eq!((t.username.as_str(), t.port), ("vm", 5040));
    assert_eq!(AmiTarget::resolve(None, None).unwrap(), None);
    // Spec without user: user and secret from manager.conf, host/port from the spec.
    let t = AmiTarget::resolve(Some("pbx:6000"), p).unwrap().unwrap();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.username.as_str(),
            t.secret.as_str()
        ),
        ("pbx", 6000, "vm", "v")
    );
    let t = AmiTarget::resolve(Some("pbx"), p).unwrap().unwrap();
    assert_eq!(t.port, 5038);
    // User without secret: that user's secret.
    let t = AmiTarget::resolve(Some("MON@pbx"), p).unwrap().unwrap();
    assert_eq!((t.username.as_str(), t.secret.as_str()), ("MON", "m"));
    let err = AmiTarget::resolve(Some("ghost@pbx"), p).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    // Complete spec: manager.conf not even read.
    let t = AmiTarget::resolve(
        Some("a:b@h"),
        Some(std::path::Path::new("/nonexistent/manager.conf")),
    )
    .unwrap()
    .unwrap();
    assert_eq!((t.username.as_str(), t.secret.as_str()), ("a", "b"));
    // Incomplete spec and no manager.conf.
    let err = AmiTarget::resolve(Some("h"), None).unwrap_err();
    assert!(matches!(err, AmiError::Config(_)), "{err:?}");
    // Connecting without a user is refused before any network traffic.
    let err = AmiClient::connect(&AmiTarget::parse("127.0.0.1:1").unwrap(), T).unwrap_err();
    assert!(matches!(err, AmiError::Config(_)), "{err:?}");
}

//! Volume mode, end to end: the real binary against real directories,
//! written the ways secrets really arrive (kubelet `..data` swaps, sidecars
//! that truncate and write in pieces, directories that appear late).
//!
//! Nothing here asserts speed. Every run has a `--timeout` as an upper
//! bound, and every wait in the test itself is bounded, so a hang fails
//! with the gate's output instead of blocking the suite.

#[path = "common/bounded.rs"]
mod bounded;
mod common;

use std::os::unix::fs::symlink;
use std::time::Duration;

use common::{
    assert_log_contains, assert_log_has, assert_no_canary, chmod, is_root, mkfifo, pause,
    wait_until, AtomicWriter, Fixture, Gate, TornWriter, CANARY, HANG_LIMIT, NOBODY, READY_TIMEOUT,
};

/// How long a writer leaves the gate alone between two steps, so that a
/// gate that wrongly took a partial state as ready has time to exit.
const STEP_MS: u64 = 300;

/// Pause between the pieces of a torn write.
const PIECE_MS: u64 = 200;

/// Logged once a watch has run its first check and found it not ready.
const NOT_READY_YET: &str = "not ready yet";

// ---------------------------------------------------------------------------
// Secrets that arrive while the gate waits
// ---------------------------------------------------------------------------

#[test]
fn file_appears_later() {
    let fx = Fixture::new();
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "user,password"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("before the file was written");

    fx.write("secrets.json", r#"{"user":"admin","password":"pw"}"#);
    let run = gate.wait(HANG_LIMIT);
    run.assert_code(0).assert_stderr("ready");
    assert_eq!(fx.log(), "", "no termination log on success");
}

#[test]
fn mount_dir_created_later_several_levels_deep() {
    let fx = Fixture::new();
    let mount = fx.mount.join("a/b/c");
    // A long poll interval: only inotify, following the path down as it
    // appears, can notice the file in time.
    let mut gate = Gate::new("watch")
        .arg("--mount-path")
        .arg(&mount)
        .arg("--termination-log")
        .arg(&fx.log)
        .args(["--file", "secrets.json", "--required-keys", "password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr("directory does not exist yet");
    for level in ["a", "a/b", "a/b/c"] {
        std::fs::create_dir(fx.mount.join(level)).unwrap();
        pause(STEP_MS);
        gate.assert_running(&format!("after creating {level}/"));
    }
    std::fs::write(mount.join("secrets.json"), r#"{"password":"pw"}"#).unwrap();
    gate.wait(HANG_LIMIT).assert_code(0);
}

/// A sidecar that runs `mkdir -p` (or `os.MkdirAll`) creates the levels of
/// the mount path microseconds apart. Wherever the gate's watch is when
/// the last level appears, it must end up watching the mount and see the
/// file written next. Only inotify can see it here (`--poll-interval 1h`).
/// The gaps between levels sweep 0-600 µs so that some level lands while
/// the gate is moving its watch down; the first run that misses the file
/// fails the test.
#[test]
fn mount_created_level_by_level_in_quick_succession() {
    for step in 0..40u64 {
        let gap = Duration::from_micros(step * 15);
        let fx = Fixture::new();
        let mount = fx.mount.join("a/b/c");
        let mut gate = Gate::new("watch")
            .arg("--mount-path")
            .arg(&mount)
            .arg("--termination-log")
            .arg(&fx.log)
            .args(["--file", "s", "--log-level", "debug"])
            .args(["--poll-interval", "1h", "--timeout", "5s"])
            .spawn();
        gate.expect_stderr(NOT_READY_YET);
        for level in ["a", "a/b", "a/b/c"] {
            let start = std::time::Instant::now();
            while start.elapsed() < gap {
                std::hint::spin_loop();
            }
            std::fs::create_dir(fx.mount.join(level)).unwrap();
        }
        pause(50);
        std::fs::write(mount.join("s"), "x").unwrap();
        let run = gate.wait(HANG_LIMIT);
        assert_eq!(
            run.code(),
            Some(0),
            "run {step}: levels created {gap:?} apart; the file was written 50 ms after \
             the last level, but the gate never saw it (its watch stayed above the mount)\n{}",
            run.dump()
        );
    }
}

#[test]
fn nested_file_whose_directory_appears_later() {
    let fx = Fixture::new();
    let mut gate = fx
        .watch()
        .args(["--file", "db/secrets.json", "--required-keys", "password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    std::fs::create_dir(fx.path("db")).unwrap();
    pause(STEP_MS);
    gate.assert_running("after creating db/");
    fx.write("db/secrets.json", r#"{"password":"pw"}"#);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn kubelet_data_swap_initial_write_then_update_adds_key() {
    let fx = Fixture::new();
    let mut kubelet = AtomicWriter::new(&fx.mount);
    // A long poll interval: only the directory watch can see the swaps, and
    // it must survive each one (a watch on the file itself would die).
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "user,password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);

    kubelet.write(&[("secrets.json", br#"{"user":"admin"}"#)]);
    pause(STEP_MS);
    gate.assert_running("after the initial write, which lacks \"password\"");
    assert!(fx.path("..data").is_symlink() && fx.path("secrets.json").is_symlink());

    kubelet.write(&[("secrets.json", br#"{"user":"admin2"}"#)]);
    pause(STEP_MS);
    gate.assert_running("after an update that still lacks \"password\"");

    kubelet.write(&[("secrets.json", br#"{"user":"admin","password":"pw"}"#)]);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn kubelet_update_adds_a_key_file() {
    // Dir-per-key: the update adds a new visible link (step 4 of the swap).
    let fx = Fixture::new();
    let mut kubelet = AtomicWriter::new(&fx.mount);
    kubelet.write(&[("username", b"admin")]);
    let mut gate = fx
        .watch()
        .args(["--required-keys", "username,password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("before the update");

    kubelet.write(&[("username", b"admin"), ("password", b"pw")]);
    gate.wait(HANG_LIMIT).assert_code(0);
    assert!(fx.path("password").is_symlink());
}

#[test]
fn kubelet_update_of_a_nested_path() {
    // A projected volume with `items: [{key: ..., path: db/secrets.json}]`:
    // the visible entry is the directory link `db -> ..data/db`.
    let fx = Fixture::new();
    let mut kubelet = AtomicWriter::new(&fx.mount);
    kubelet.write(&[("db/secrets.json", br#"{"user":"admin"}"#)]);
    let mut gate = fx
        .watch()
        .args([
            "--file",
            "db/secrets.json",
            "--required-keys",
            "user,password",
        ])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("before the update");
    assert!(fx.path("db").is_symlink());

    kubelet.write(&[("db/secrets.json", br#"{"user":"admin","password":"pw"}"#)]);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn sidecar_torn_write_is_never_taken_as_ready() {
    let fx = Fixture::new();
    fx.write("secrets.json", r#"{"user":"admin"}"#);
    // A short poll interval on top of inotify, so the gate checks the file
    // often while it is half-written.
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "user,password"])
        .args(["--poll-interval", "20ms", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);

    let mut sidecar = TornWriter::truncate(&fx.path("secrets.json"));
    pause(PIECE_MS);
    gate.assert_running("after the truncate (empty file)");
    let pieces: [&[u8]; 4] = [
        br#"{"user":"#,
        br#""admin","pass"#,
        br#"word":"s3"#,
        br#"cret"}"#,
    ];
    let (last, first) = pieces.split_last().unwrap();
    for (i, piece) in first.iter().enumerate() {
        sidecar.piece(piece);
        pause(PIECE_MS);
        gate.assert_running(&format!("after piece {} of {}", i + 1, pieces.len()));
    }
    sidecar.piece(last);
    drop(sidecar);
    let run = gate.wait(HANG_LIMIT);
    run.assert_code(0).assert_stderr("still being written?");
}

#[test]
fn key_added_later_in_place() {
    let fx = Fixture::new();
    fx.write("secrets.json", r#"{"user":"admin"}"#);
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "user,password"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(r#"key "password" missing"#);
    pause(STEP_MS);
    gate.assert_running("before the key was added");
    fx.write("secrets.json", r#"{"user":"admin","password":"pw"}"#);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn key_added_later_by_rename() {
    let fx = Fixture::new();
    fx.write("app.yaml", "user: admin\n");
    let mut gate = fx
        .watch()
        .args(["--file", "app.yaml", "--required-keys", "user,password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("before the key was added");
    fx.replace("app.yaml", "user: admin\npassword: pw\n");
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn mount_dir_removed_and_recreated_while_waiting() {
    let fx = Fixture::new();
    fx.write("secrets.json", r#"{"user":"admin"}"#);
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "password"])
        .args(["--poll-interval", "1h", "--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    std::fs::remove_dir_all(&fx.mount).unwrap();
    pause(STEP_MS);
    gate.assert_running("after the mount directory was removed");
    std::fs::create_dir(&fx.mount).unwrap();
    pause(STEP_MS);
    gate.assert_running("after the mount directory was recreated empty");
    fx.write("secrets.json", r#"{"password":"pw"}"#);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn poll_only_still_sees_a_file_appear() {
    let fx = Fixture::new();
    let mut gate = fx
        .watch()
        .args(["--file", "token", "--poll-only", "--poll-interval", "100ms"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr("polling only");
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("before the file was written");
    fx.write("token", "t0k3n");
    gate.wait(HANG_LIMIT).assert_code(0);
}

// ---------------------------------------------------------------------------
// Layouts and formats
// ---------------------------------------------------------------------------

#[test]
fn dir_per_key_layout() {
    let fx = Fixture::new();
    fx.write("username", "admin");
    fx.write("password", "");
    let keys = ["--required-keys", "username,password"];

    let run = fx.check().args(keys).run();
    run.assert_code(1);
    assert_log_has(&fx, "- password: empty (still being written?)", &run);
    assert!(!fx.log().contains("username"), "{}", fx.log());

    fx.write("password", " \n");
    let run = fx.check().args(keys).run();
    run.assert_code(1);
    assert_log_has(&fx, "- password: empty (still being written?)", &run);

    let mut gate = fx
        .watch()
        .args(keys)
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    pause(STEP_MS);
    gate.assert_running("while the password file is blank");
    fx.write("password", "pw");
    gate.wait(HANG_LIMIT).assert_code(0);

    fx.check().args(keys).run().assert_code(0);
}

/// (file, --format or "", content, keys, expected exit, a termination-log line)
type FormatCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i32,
    &'static str,
);

/// Runs `check` on each case through the binary. These are a few
/// representative rows per format (one ready, one key missing, one
/// invalid); the full tables run as unit tests beside the parser, in
/// `src/check/format_table.rs`.
fn run_format_cases(cases: &[FormatCase]) {
    for &(file, format, content, keys, want, line) in cases {
        let fx = Fixture::new();
        fx.write(file, content);
        let mut gate = fx.check().args(["--file", file]);
        if !format.is_empty() {
            gate = gate.args(["--format", format]);
        }
        if !keys.is_empty() {
            gate = gate.args(["--required-keys", keys]);
        }
        let run = gate.run();
        assert_eq!(
            run.code(),
            Some(want),
            "{file} {content:?} keys {keys:?}\n{}",
            run.dump()
        );
        if want == 0 {
            assert_eq!(fx.log(), "", "{file} {content:?}");
        } else {
            assert_log_has(&fx, "secret-gate: check: not ready", &run);
            assert_log_has(&fx, line, &run);
        }
    }
}

#[test]
fn yaml_format() {
    run_format_cases(&[
        (
            "app.yaml",
            "",
            "db:\n  user: u\n  password: p\n",
            "/db/user,/db/password",
            0,
            "",
        ),
        (
            "config",
            "yaml",
            "user: u\npassword: p\n",
            "password",
            0,
            "",
        ),
        (
            "app.yaml",
            "",
            "db:\n  user: u\n",
            "/db/user,/db/password",
            1,
            r#"- app.yaml: key "/db/password" missing"#,
        ),
        (
            "app.yaml",
            "",
            "user: [u\n",
            "user",
            1,
            "- app.yaml: not valid YAML at line 2 column 1 (file is 9 bytes; still being written?)",
        ),
    ]);
}

#[test]
fn env_format() {
    run_format_cases(&[
        (
            "app.env",
            "",
            "# db\nexport USER=admin\nPASSWORD='pw'\n\n",
            "USER,PASSWORD",
            0,
            "",
        ),
        (
            "app.env",
            "",
            "USER=admin\nPASSWORD=\n",
            "USER,PASSWORD",
            1,
            r#"- app.env: key "PASSWORD" missing"#,
        ),
        (
            "app.env",
            "",
            "USER=admin\nPASSWORD\n",
            "PASSWORD",
            1,
            "- app.env: not valid env at line 2 column 1: expected KEY=VALUE (file is 20 bytes; still being written?)",
        ),
    ]);
}

#[test]
fn raw_format() {
    run_format_cases(&[
        ("token", "", "t0k3n", "", 0, ""),
        // `auto` reads .crt files as PEM; `--format raw` only asks for bytes.
        ("tls.crt", "raw", "-----BEGIN CERTIFICATE-----\n", "", 0, ""),
        (
            "token",
            "",
            " \n\t",
            "",
            1,
            "- token: empty (still being written?)",
        ),
    ]);
}

#[test]
fn json_pointer_keys_and_null_or_empty_values() {
    let doc = r#"{
        "db": {"password": "x", "user": null, "host": ""},
        "token": null,
        "empty": "",
        "port": 5432,
        "a/b": {"c~d": "v"}
    }"#;
    run_format_cases(&[
        ("s.json", "", doc, "/db/password,port,/a~1b/c~0d,db", 0, ""),
        (
            "s.json",
            "",
            doc,
            "/db/password,/db/user",
            1,
            r#"- s.json: key "/db/user" missing"#,
        ),
        (
            "s.json",
            "",
            doc,
            "empty",
            1,
            r#"- s.json: key "empty" missing"#,
        ),
    ]);
}

#[test]
fn json_pointer_value_filled_in_later() {
    let fx = Fixture::new();
    fx.write("s.json", r#"{"db":{"password":null}}"#);
    let mut gate = fx
        .watch()
        .args(["--file", "s.json", "--required-keys", "/db/password"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    fx.write("s.json", r#"{"db":{"password":""}}"#);
    pause(STEP_MS);
    gate.assert_running("while /db/password is \"\"");
    fx.write("s.json", r#"{"db":{"password":"pw"}}"#);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn keys_may_come_from_several_files() {
    let fx = Fixture::new();
    fx.write("a.json", r#"{"user":"admin"}"#);
    fx.write("b.env", "PASSWORD=pw\n");
    let files = ["--file", "a.json", "--file", "b.env"];
    fx.check()
        .args(files)
        .args(["--required-keys", "user,PASSWORD"])
        .run()
        .assert_code(0);
    let run = fx
        .check()
        .args(files)
        .args(["--required-keys", "user,PASSWORD,token"])
        .run();
    run.assert_code(1);
    assert_log_has(&fx, r#"- a.json, b.env: key "token" missing"#, &run);
}

// ---------------------------------------------------------------------------
// Things at the path that are not a readable regular file
// ---------------------------------------------------------------------------

#[test]
fn fifo_is_refused_without_blocking() {
    let fx = Fixture::new();
    let fifo = fx.path("secrets.json");
    mkfifo(&fifo);

    // A gate that opened the FIFO for a blocking read would hang here, and
    // its deadline could not fire: the upper bound catches that.
    let run = fx
        .watch()
        .args(["--file", "secrets.json", "--timeout", "1s"])
        .spawn()
        .wait(HANG_LIMIT);
    run.assert_code(1);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "hung on a FIFO\n{}",
        run.dump()
    );
    assert_log_has(
        &fx,
        "secret-gate: watch: not ready after 1s (--timeout)",
        &run,
    );
    assert_log_has(&fx, "- secrets.json: is a FIFO, not a regular file", &run);

    let run = fx.check().args(["--file", "secrets.json"]).run();
    run.assert_code(1);
    assert_log_contains(&fx, "FIFO", &run);
}

#[test]
fn oversize_file_is_named() {
    let fx = Fixture::new();
    let padding = "x".repeat(2000);
    fx.write("s.json", format!(r#"{{"password":"{padding}"}}"#));
    let run = fx
        .check()
        .args(["--file", "s.json", "--required-keys", "password"])
        .args(["--max-file-size", "1KiB"])
        .run();
    run.assert_code(1);
    assert_log_has(
        &fx,
        "- s.json: is 2015 bytes, over the 1024-byte limit (raise --max-file-size if this is right)",
        &run,
    );

    // Exactly at the limit is fine.
    let padding = "x".repeat(1024 - r#"{"password":""}"#.len());
    fx.write("s.json", format!(r#"{{"password":"{padding}"}}"#));
    assert_eq!(std::fs::metadata(fx.path("s.json")).unwrap().len(), 1024);
    fx.check()
        .args(["--file", "s.json", "--required-keys", "password"])
        .args(["--max-file-size", "1KiB"])
        .run()
        .assert_code(0);
}

#[test]
fn permission_denied_is_named() {
    let fx = Fixture::new();
    fx.write("s.json", r#"{"password":"pw"}"#);
    chmod(&fx.path("s.json"), 0o000);
    // Root reads anything; the gate then runs as nobody.
    fx.open_to_others();
    let run = fx
        .check()
        .args(["--file", "s.json", "--required-keys", "password"])
        .unprivileged()
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "- s.json: permission denied", &run);
    if is_root() {
        assert_log_contains(&fx, &format!("the gate runs as uid {NOBODY}"), &run);
    }

    // The same file, made readable, is ready.
    chmod(&fx.path("s.json"), 0o644);
    fx.check()
        .args(["--file", "s.json", "--required-keys", "password"])
        .unprivileged()
        .run()
        .assert_code(0);
}

#[test]
fn symlink_loop_dangling_link_and_directory_are_named() {
    let fx = Fixture::new();
    symlink("loop-b.json", fx.path("loop-a.json")).unwrap();
    symlink("loop-a.json", fx.path("loop-b.json")).unwrap();
    symlink("..data/nowhere.json", fx.path("dangling.json")).unwrap();
    std::fs::create_dir(fx.path("dir.json")).unwrap();

    let cases = [
        ("loop-a.json", "- loop-a.json: is a symlink loop"),
        (
            "dangling.json",
            "- dangling.json: is a symlink whose target is missing",
        ),
        ("dir.json", "- dir.json: is a directory, not a regular file"),
    ];
    for (file, line) in cases {
        let run = fx.check().args(["--file", file]).run();
        run.assert_code(1);
        assert_log_has(&fx, line, &run);
    }

    // All three at once, in watch mode, until the deadline.
    let run = fx
        .watch()
        .args(["--file", "loop-a.json", "--file", "dangling.json"])
        .args(["--file", "dir.json", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    for (_, line) in cases {
        assert_log_has(&fx, line, &run);
    }
}

#[test]
fn device_behind_a_symlink_is_refused_without_reading() {
    // A reader that trusted the link would read /dev/zero forever.
    let fx = Fixture::new();
    symlink("/dev/zero", fx.path("s.json")).unwrap();
    let run = fx
        .watch()
        .args(["--file", "s.json", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "hung on /dev/zero\n{}",
        run.dump()
    );
    assert_log_has(
        &fx,
        "- s.json: is a character device, not a regular file",
        &run,
    );
}

#[test]
fn unreadable_mount_dir_falls_back_to_polling_and_is_named() {
    let fx = Fixture::new();
    fx.write("s.json", r#"{"password":"pw"}"#);
    fx.open_to_others();
    // Unreadable to the gate: as root it runs as nobody; otherwise the
    // owner is locked out too.
    chmod(&fx.mount, 0o000);
    let run = fx
        .watch()
        .args(["--file", "s.json", "--required-keys", "password"])
        .args(["--timeout", "1s"])
        .unprivileged()
        .run();
    chmod(&fx.mount, 0o755);
    run.assert_code(1).assert_stderr("falling back to polling");
    assert_log_contains(&fx, "- s.json: permission denied", &run);
    assert_log_contains(&fx, "last error: inotify unavailable", &run);
}

#[test]
fn mount_path_that_is_a_file() {
    let fx = Fixture::without_mount();
    std::fs::write(&fx.mount, "not a dir").unwrap();
    let run = fx.check().args(["--file", "s.json"]).run();
    run.assert_code(1);
    assert_log_contains(&fx, "is not a directory", &run);
}

// ---------------------------------------------------------------------------
// Ending: deadline, signals, check
// ---------------------------------------------------------------------------

#[test]
fn deadline_names_the_missing_key() {
    let fx = Fixture::new();
    fx.write("secrets.json", r#"{"user":"admin"}"#);
    let run = fx
        .watch()
        .args(["--file", "secrets.json", "--required-keys", "user,password"])
        .args(["--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert_eq!(
        fx.log(),
        "secret-gate: watch: not ready after 1s (--timeout)\n\
         - secrets.json: key \"password\" missing\n",
        "{}",
        run.dump()
    );
}

#[test]
fn deadline_with_mount_never_created() {
    let fx = Fixture::without_mount();
    let run = fx
        .watch()
        .args(["--required-keys", "username,password", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert_log_contains(
        &fx,
        "directory does not exist yet; waiting for username, password",
        &run,
    );
}

fn stopped_by(signal: &str, code: i32) {
    let fx = Fixture::new();
    let mut gate = fx
        .watch()
        .args(["--file", "secrets.json", "--timeout", "60s"])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    gate.signal(signal);
    let run = gate.wait(HANG_LIMIT);
    run.assert_code(code);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "the gate ignored SIG{signal} until its deadline\n{}",
        run.dump()
    );
    assert_log_contains(&fx, &format!("stopped by SIG{signal} after"), &run);
    assert_log_has(&fx, "- secrets.json: missing", &run);
}

#[test]
fn sigterm_exits_143() {
    stopped_by("TERM", 143);
}

#[test]
fn sigint_exits_130() {
    stopped_by("INT", 130);
}

#[test]
fn check_ready_and_not_ready() {
    let fx = Fixture::new();
    let args = ["--file", "secrets.json", "--required-keys", "user,password"];

    let run = fx.check().args(args).run();
    run.assert_code(1);
    assert_eq!(
        fx.log(),
        "secret-gate: check: not ready\n- secrets.json: missing\n",
        "{}",
        run.dump()
    );

    fx.write("secrets.json", r#"{"user":"admin","password":"pw"}"#);
    std::fs::remove_file(&fx.log).unwrap();
    let run = fx.check().args(args).run();
    run.assert_code(0);
    assert!(!fx.log.exists(), "check wrote a termination log on success");

    // check never waits, even for a mount that does not exist.
    let gone = Fixture::without_mount();
    let run = gone.check().args(args).run();
    run.assert_code(1);
    assert_log_contains(&gone, "directory does not exist yet", &run);
}

#[test]
fn unwritable_termination_log_does_not_change_the_exit_code() {
    let fx = Fixture::new();
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&fx.mount)
        .arg("--termination-log")
        .arg(fx.root.path().join("no/such/dir/termination-log"))
        .args(["--file", "secrets.json"])
        .run();
    run.assert_code(1)
        .assert_stderr("could not write the termination log");
}

#[test]
fn termination_log_is_capped_at_4096_bytes() {
    let fx = Fixture::new();
    let mut gate = fx.check();
    for i in 0..300 {
        gate = gate.args(["--file", &format!("missing-secret-file-number-{i:03}.json")]);
    }
    let run = gate.run();
    run.assert_code(1);
    let log = fx.log();
    assert!(log.len() <= 4096, "{} bytes", log.len());
    assert!(log.starts_with(
        "secret-gate: check: not ready\n- missing-secret-file-number-000.json: missing\n"
    ));
}

// ---------------------------------------------------------------------------
// Usage errors and configuration from the environment
// ---------------------------------------------------------------------------

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    // (extra arguments, text stderr must contain, also in the termination log)
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "nothing to wait for: give --file NAME", true),
        (
            &["--file", "../x"],
            "--file ../x: give a path relative to --mount-path, without `..`",
            true,
        ),
        (
            &["--file", "/etc/passwd"],
            "give a path relative to --mount-path",
            true,
        ),
        (
            &["--required-keys", "/db/password"],
            "without --file each key names a file directly under --mount-path",
            true,
        ),
        (&["--required-keys", "a,,b"], "empty key in the list", true),
        (
            &["--file", "token", "--required-keys", "password"],
            "--required-keys needs a format with keys",
            true,
        ),
        (
            &["--file", "s.json", "--log-level", "loud"],
            "invalid value 'loud' for '--log-level <LEVEL>'",
            true,
        ),
        (
            &["--file", "s.json", "--poll-interval", "1ms"],
            "--poll-interval must be at least 10ms",
            true,
        ),
        // clap rejects these before the gate runs; no termination log.
        (
            &["--file", "s.json", "--timeout", "30"],
            "\"30\" has no unit: write e.g. 30s or 30ms",
            false,
        ),
        (
            &["--file", "s.json", "--max-file-size", "0"],
            "size must be more than 0",
            false,
        ),
        (
            &["--file", "s.json", "--format", "toml"],
            "invalid value 'toml'",
            false,
        ),
    ];
    for &(args, message, logged) in cases {
        let fx = Fixture::new();
        fx.write("s.json", r#"{"password":"pw"}"#);
        let mut gate = fx.watch().args(args);
        if !args.contains(&"--timeout") {
            gate = gate.args(["--timeout", "1s"]);
        }
        let run = gate.run();
        run.assert_code(2).assert_stderr(message);
        assert_eq!(run.stdout, "", "{args:?}");
        if logged {
            assert_log_contains(&fx, "secret-gate: configuration error: ", &run);
            assert_log_contains(&fx, message, &run);
        }
    }

    // No --mount-path at all.
    let run = Gate::new("check").args(["--file", "s.json"]).run();
    run.assert_code(2).assert_stderr("--mount-path");
}

#[test]
fn configuration_from_environment_variables() {
    let fx = Fixture::new();
    fx.write("a.json", r#"{"user":"admin"}"#);
    fx.write("b.env", "PASSWORD=pw\n");
    let env_gate = |subcommand: &str, keys: &str| {
        Gate::new(subcommand)
            .env("SECRET_GATE_MOUNT_PATH", &fx.mount)
            .env("SECRET_GATE_FILE", "a.json,b.env")
            .env("SECRET_GATE_REQUIRED_KEYS", keys)
            .arg("--termination-log")
            .arg(&fx.log)
    };

    env_gate("watch", "user,PASSWORD")
        .env("SECRET_GATE_TIMEOUT", READY_TIMEOUT)
        .run()
        .assert_code(0);
    env_gate("check", "user,PASSWORD").run().assert_code(0);
    // Spaces around list entries are formatting, in both lists.
    env_gate("check", " user , PASSWORD ")
        .env("SECRET_GATE_FILE", "a.json, b.env")
        .run()
        .assert_code(0);

    // SECRET_GATE_TIMEOUT bounds the wait; SECRET_GATE_LOG_FORMAT is honoured.
    let run = env_gate("watch", "user,PASSWORD,token")
        .env("SECRET_GATE_TIMEOUT", "1s")
        .env("SECRET_GATE_LOG_FORMAT", "json")
        .run();
    run.assert_code(1);
    assert_log_has(
        &fx,
        "secret-gate: watch: not ready after 1s (--timeout)",
        &run,
    );
    assert_log_has(&fx, r#"- a.json, b.env: key "token" missing"#, &run);
    for line in run.stderr.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}\n{}",
            run.dump()
        );
    }

    // SECRET_GATE_POLL_ONLY takes true or false.
    env_gate("watch", "user,PASSWORD")
        .env("SECRET_GATE_TIMEOUT", READY_TIMEOUT)
        .env("SECRET_GATE_POLL_ONLY", "true")
        .run()
        .assert_code(0)
        .assert_stderr("polling only");
    let run = env_gate("watch", "user,PASSWORD")
        .env("SECRET_GATE_TIMEOUT", READY_TIMEOUT)
        .env("SECRET_GATE_POLL_ONLY", "false")
        .run();
    run.assert_code(0);
    assert!(!run.stderr.contains("polling only"), "{}", run.dump());

    // A flag wins over its variable.
    Gate::new("check")
        .env("SECRET_GATE_MOUNT_PATH", fx.root.path().join("elsewhere"))
        .env("SECRET_GATE_REQUIRED_KEYS", "nope")
        .arg("--mount-path")
        .arg(&fx.mount)
        .args(["--file", "a.json", "--required-keys", "user"])
        .arg("--termination-log")
        .arg(&fx.log)
        .run()
        .assert_code(0);
}

// ---------------------------------------------------------------------------
// Secret values never leave the process
// ---------------------------------------------------------------------------

/// Runs `check` (text and JSON logs) and a 1 s `watch` at trace level on
/// `file` holding `content`, and asserts the canary appears nowhere.
fn assert_never_leaks(file: &str, format: &str, content: &str, keys: &str, want: i32) {
    assert!(content.contains(CANARY), "the case must carry the canary");
    let fx = Fixture::new();
    fx.write(file, content);
    let base = |sub: &str| {
        let mut gate = fx.gate(sub).args(["--file", file, "--log-level", "trace"]);
        if !format.is_empty() {
            gate = gate.args(["--format", format]);
        }
        if !keys.is_empty() {
            gate = gate.args(["--required-keys", keys]);
        }
        gate
    };
    let runs = [
        base("check").args(["--log-format", "json"]),
        base("check").args(["--log-format", "text"]),
        base("watch").args(["--log-format", "json", "--timeout", "1s"]),
    ];
    for gate in runs {
        let _ = std::fs::remove_file(&fx.log);
        let run = gate.run();
        let what = format!("{file} {content:?} keys {keys:?}");
        assert_eq!(run.code(), Some(want), "{what}\n{}", run.dump());
        let shown = format!("{what}\n{}", run.dump());
        assert_no_canary(&run.stdout, "stdout", &shown);
        assert_no_canary(&run.stderr, "stderr", &shown);
        let log = fx.log();
        assert_no_canary(&log, "termination log", &shown);
        if want != 0 {
            assert!(!log.is_empty(), "no diagnosis: {what}\n{}", run.dump());
        }
    }
}

#[test]
fn canary_ready_and_key_missing() {
    let ready = format!(r#"{{"user":"admin","password":"{CANARY}"}}"#);
    assert_never_leaks("s.json", "", &ready, "user,password", 0);
    let missing = format!(r#"{{"user":"{CANARY}","{CANARY}":"{CANARY}"}}"#);
    assert_never_leaks("s.json", "", &missing, "user,password", 1);
    let null = format!(r#"{{"password":null,"note":"{CANARY}"}}"#);
    assert_never_leaks("s.json", "", &null, "/password", 1);
    assert_never_leaks("password", "", CANARY, "", 0);
}

#[test]
fn canary_in_torn_or_invalid_json() {
    let cases = [
        format!(r#"{{"user":"admin","password":"{CANARY}"#),
        format!(r#"{{"user":"admin","password":"{CANARY}""#),
        format!(r#"{{"password":{CANARY}}}"#),
        format!(r#"{{"{CANARY}"}}"#),
        format!(r#"{{"password":"{CANARY}",}}"#),
        format!("{{\"password\":\"{CANARY}\u{1}\"}}"),
        format!(r#"{{"password":"{CANARY}\q"}}"#),
        CANARY.to_owned(),
        format!(r#"["{CANARY}""#),
        format!(r#"{{"password":"{CANARY}"}} trailing"#),
    ];
    for content in cases {
        assert_never_leaks("s.json", "", &content, "password", 1);
    }
}

#[test]
fn canary_in_invalid_yaml() {
    let cases = [
        format!("password: [{CANARY}\n"),
        format!("{CANARY}: a\n  - b: [\n"),
        format!("? [{CANARY}]\n: v\n"),
        format!("user: {CANARY}\nuser: again\n{CANARY}: x\n"),
        format!("password: *{CANARY}\n"),
        format!("password: !{CANARY} x\n"),
        format!("password: \"{CANARY}\n"),
        format!("- {CANARY}\nkey: v\n"),
        format!("password:\t{CANARY}\n\tx: y\n"),
    ];
    for content in cases {
        assert_never_leaks("app.yaml", "", &content, "password", 1);
    }
    let forced = format!("password: [{CANARY}\n");
    assert_never_leaks("config", "yaml", &forced, "password", 1);
}

#[test]
fn canary_in_invalid_env() {
    let cases = [
        format!("{CANARY}\n"),
        format!("PASSWORD=\"{CANARY}\n"),
        format!("PASSWORD='{CANARY}\n"),
        format!("1{CANARY}=x\n"),
        format!("{CANARY} X=y\n"),
        format!("USER={CANARY}\n"),
    ];
    for content in cases {
        assert_never_leaks("app.env", "", &content, "PASSWORD", 1);
    }
    let forced = format!("PASSWORD=\"{CANARY}\n");
    assert_never_leaks("settings", "env", &forced, "PASSWORD", 1);
}

/// `serde_yaml_ng` prefixes its errors with the path to the failing node,
/// and that path is made of the document's own mapping keys: part of the
/// secret when the map is a value.
#[test]
fn canary_in_yaml_error_path() {
    let cases = [
        format!("password:\n  {CANARY}: !tag x\n"),
        format!("password:\n  - a\n  - {CANARY}: !tag x\n"),
        format!("password: {{{CANARY}: [1, !tag x]}}\n"),
    ];
    for content in cases {
        assert_never_leaks("app.yaml", "", &content, "password", 1);
    }
}

/// YAML, env and raw files can be cut short and still parse (`PASSWORD=hun`
/// of `PASSWORD=hunter2`): the gate waits until such a file has been
/// unchanged for the settle time. A generous settle time keeps the test
/// robust on a loaded machine; the pieces come 200 ms apart.
#[test]
fn torn_env_write_that_parses_is_not_taken_as_ready() {
    for (file, keys, pieces) in [
        (
            "app.env",
            "USER,PASSWORD",
            ["USER=admin\nPASSWORD=hun", "ter2\n"],
        ),
        (
            "s.yaml",
            "user,password",
            ["user: admin\npassword: hun", "ter2\n"],
        ),
    ] {
        let fx = Fixture::new();
        let mut gate = fx
            .watch()
            .args(["--file", file, "--required-keys", keys])
            .args(["--settle-time", "2s", "--timeout", READY_TIMEOUT])
            .spawn();
        gate.expect_stderr(NOT_READY_YET);
        let mut writer = TornWriter::truncate(&fx.path(file));
        writer.piece(pieces[0].as_bytes());
        pause(PIECE_MS);
        gate.assert_running("after a piece that parses but is cut short");
        writer.piece(pieces[1].as_bytes());
        pause(PIECE_MS);
        gate.assert_running("within the settle time of the last piece");
        gate.wait(HANG_LIMIT).assert_code(0);
    }
}

#[test]
fn a_file_that_keeps_settling_is_named_in_the_diagnosis() {
    let fx = Fixture::new();
    fx.write("password", "hun");
    let run = fx
        .watch()
        .args([
            "--required-keys",
            "password",
            "--settle-time",
            "1h",
            "--timeout",
            "1s",
        ])
        .run();
    run.assert_code(1);
    let log = fx.log();
    assert!(
        log.contains("- password: unchanged for "),
        "{log}\n{}",
        run.dump()
    );
    assert!(log.contains("of the 3600000ms settle time"), "{log}");
}

/// `check` sees a file for the first time and cannot know how long it has
/// been quiet (it never trusts file times), so it waits the settle time
/// once, looks again, and passes. The settle time here is far above how
/// long a `check` otherwise takes, so the wait shows in the run time.
#[test]
fn check_right_after_a_complete_write_waits_out_the_settle_time() {
    let settle = Duration::from_secs(2);
    let fx = Fixture::new();
    fx.write("app.env", "A=hunter2\n");
    let run = fx
        .check()
        .args(["--file", "app.env", "--required-keys", "A"])
        .args(["--settle-time", "2s"])
        .run();
    run.assert_code(0);
    assert_eq!(fx.log(), "", "no termination log on success");
    assert!(
        run.elapsed >= settle,
        "check passed after {:?}, before the {settle:?} settle time was up\n{}",
        run.elapsed,
        run.dump()
    );
}

#[test]
fn a_timestamp_set_back_does_not_skip_the_settle_time() {
    let fx = Fixture::new();
    fx.write("app.env", "A=hun");
    // mtime an hour back (as `touch -d` or a copy that keeps times would
    // leave it); the change time still says "just now".
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(fx.path("app.env"))
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let run = fx
        .watch()
        .args(["--file", "app.env", "--required-keys", "A"])
        .args(["--settle-time", "1h", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "app.env: unchanged for ", &run);
}

#[test]
fn kubelet_files_are_complete_and_need_no_settle_time() {
    let fx = Fixture::new();
    let mut writer = AtomicWriter::new(&fx.mount);
    writer.write(&[("username", b"admin"), ("password", b"hunter2")]);
    fx.check()
        .args([
            "--required-keys",
            "username,password",
            "--settle-time",
            "1h",
        ])
        .run()
        .assert_code(0);
}

#[test]
fn a_bad_value_in_the_environment_reaches_the_termination_log() {
    let fx = Fixture::new();
    let run = fx
        .watch()
        .env("SECRET_GATE_TIMEOUT", "30")
        .args(["--file", "s.json"])
        .run();
    run.assert_code(2);
    let log = fx.log();
    assert!(
        log.starts_with(
            "secret-gate: configuration error: invalid value '30' for '--timeout <DURATION>'"
        ),
        "{log}\n{}",
        run.dump()
    );
    assert!(log.contains("has no unit"), "{log}");
}

#[test]
fn progress_is_logged_when_the_set_of_missing_keys_changes() {
    let fx = Fixture::new();
    fx.write("s.json", r#"{"a":"1"}"#);
    let mut gate = fx
        .watch()
        .args(["--file", "s.json", "--required-keys", "a,b,c"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(r#"key "b" missing"#);
    fx.replace("s.json", r#"{"a":"1","b":"2"}"#);
    // A new progress line lists only c.
    let second = wait_until(HANG_LIMIT, || {
        gate.stderr().matches(NOT_READY_YET).count() >= 2
    });
    assert!(second, "no second progress line\n{}", gate.dump());
    let last = gate
        .stderr()
        .lines()
        .rev()
        .find(|l| l.contains(NOT_READY_YET))
        .unwrap()
        .to_owned();
    assert!(
        last.contains(r#"key "c" missing"#) && !last.contains(r#"key "b""#),
        "{last}"
    );
    fx.replace("s.json", r#"{"a":"1","b":"2","c":"3"}"#);
    gate.wait(HANG_LIMIT).assert_code(0);
}

// ---------------------------------------------------------------------------
// Hardening: one version per scan, settle time on the gate's own clock,
// inputs that must never hang or pass early
// ---------------------------------------------------------------------------

/// Replays the kubelet's update sequence as fast as it can, alternating two
/// payloads that each lack one key, until `stop` is set.
fn alternate_incomplete_payloads(
    mount: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut kubelet = AtomicWriter::new(&mount);
        let mut swaps = 0u32;
        // Bounded: the test sets `stop`, and this gives up after 60 s.
        let start = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < HANG_LIMIT {
            let payload: &[(&str, &[u8])] = if swaps % 2 == 0 {
                &[("username", b"user1")]
            } else {
                &[("password", b"pass2")]
            };
            kubelet.write(payload);
            swaps += 1;
        }
        swaps
    })
}

#[test]
fn a_scan_never_mixes_two_kubelet_versions() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fx = Fixture::new();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = alternate_incomplete_payloads(fx.mount.clone(), Arc::clone(&stop));
    let keys = ["--required-keys", "username,password"];

    let watchers: Vec<_> = (0..3)
        .map(|_| {
            Gate::new("watch")
                .arg("--mount-path")
                .arg(&fx.mount)
                .args(keys)
                .args(["--timeout", "3s", "--termination-log", "/dev/null"])
                .spawn()
        })
        .collect();
    let mut passed = 0;
    for _ in 0..300 {
        let run = Gate::new("check")
            .arg("--mount-path")
            .arg(&fx.mount)
            .args(keys)
            .args(["--termination-log", "/dev/null"])
            .run();
        if run.code() == Some(0) {
            passed += 1;
        }
    }
    for watcher in watchers {
        watcher.wait(HANG_LIMIT).assert_code(1);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = writer.join().unwrap();
    assert_eq!(
        passed, 0,
        "check passed on a mix of versions ({swaps} swaps)"
    );
    assert!(swaps > 100, "the writer made only {swaps} swaps");

    // Not vacuous: a version holding both keys passes.
    let mut kubelet = AtomicWriter::new(&fx.mount);
    kubelet.write(&[("username", b"user2"), ("password", b"pass2")]);
    fx.check().args(keys).run().assert_code(0);
}

#[test]
fn a_slow_writer_that_never_pauses_long_never_passes() {
    use std::io::Write as _;
    let fx = Fixture::new();
    let path = fx.path("app.env");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"PASSWORD=").unwrap();
    let mut gate = fx
        .watch()
        .args(["--file", "app.env", "--required-keys", "PASSWORD"])
        .args(["--timeout", READY_TIMEOUT])
        .spawn();
    gate.expect_stderr(NOT_READY_YET);
    // One byte every 0.3 ms, each a valid env file: never quiet for the
    // 250 ms settle time until the end.
    for _ in 0..3000 {
        file.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    gate.assert_running("while the writer was still appending");
    drop(file);
    gate.wait(HANG_LIMIT).assert_code(0);
}

#[test]
fn a_look_alike_data_directory_does_not_skip_the_settle_time() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("..data")).unwrap();
    fx.write("..data/app.env", "A=hun");
    symlink("..data/app.env", fx.path("app.env")).unwrap();
    let run = fx
        .watch()
        .args(["--file", "app.env", "--required-keys", "A"])
        .args(["--settle-time", "1h", "--timeout", "1s"])
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "app.env: unchanged for ", &run);
}

#[test]
fn a_termination_log_that_is_a_fifo_never_blocks() {
    let fx = Fixture::new();
    let fifo = fx.root.path().join("out/fifo");
    mkfifo(&fifo);
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&fx.mount)
        .args(["--required-keys", "password", "--termination-log"])
        .arg(&fifo)
        .run();
    run.assert_code(1);
    run.assert_stderr("is a FIFO, not a regular file or character device; not written");
    run.assert_stderr("point --termination-log at a regular file");
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&fx.mount)
        .args(["--required-keys", "password", "--termination-log"])
        .arg(fx.root.path())
        .run();
    run.assert_code(1);
    run.assert_stderr("is a directory, not a regular file or character device; not written");
    // An argument error, which finds the log from the raw arguments.
    let run = Gate::new("check")
        .args(["--bogus", "--termination-log"])
        .arg(&fifo)
        .run();
    run.assert_code(2);
}

/// `--termination-log /dev/stderr` is the gate's own stderr, written as it
/// is: appended to a file (what was logged before stays), and written to
/// a pipe (which cannot be reopened by name).
#[test]
fn a_termination_log_on_dev_stderr_is_the_gates_own_stderr() {
    let fx = Fixture::new();
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&fx.mount)
        .args([
            "--required-keys",
            "password",
            "--termination-log",
            "/dev/stderr",
        ])
        .run();
    run.assert_code(1);
    // The log line before the diagnosis, then the diagnosis as its own line.
    let logged = run
        .stderr
        .find("ERROR")
        .unwrap_or_else(|| panic!("{}", run.dump()));
    let written = run
        .stderr
        .find("\nsecret-gate: ")
        .unwrap_or_else(|| panic!("{}", run.dump()));
    assert!(logged < written, "{}", run.dump());
    // stderr a pipe: through `| cat` to stdout.
    let script = format!(
        "\"$0\" check --mount-path '{}' --required-keys password --termination-log /dev/stderr 2>&1 | cat",
        fx.mount.display()
    );
    let run = Gate::program("sh")
        .arg("-c")
        .arg(script)
        .arg(common::BIN)
        .run();
    assert!(run.stdout.contains("\nsecret-gate: "), "{}", run.dump());
    assert!(!run.stdout.contains("could not write"), "{}", run.dump());
}

#[test]
fn arguments_that_are_not_utf8_do_not_crash_the_error_path() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let run = fx
        .check()
        .arg("--required-keys")
        .arg(std::ffi::OsStr::from_bytes(b"pass\xffword"))
        .arg("--bogus")
        .run();
    run.assert_code(2);
    assert!(
        fx.log().starts_with("secret-gate: configuration error:"),
        "{}",
        fx.log()
    );
}

#[test]
fn no_subcommand_says_so_in_the_termination_log() {
    let fx = Fixture::new();
    let run = Gate::binary()
        .env("SECRET_GATE_TERMINATION_LOG", &fx.log)
        .run();
    run.assert_code(2);
    let log = fx.log();
    assert!(log.contains("a subcommand is missing"), "{log}");
    assert!(log.len() < 300, "{log}");
}

#[test]
fn mount_errors_name_the_real_cause() {
    let fx = Fixture::new();
    let too_long = fx.mount.join("x".repeat(300));
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&too_long)
        .args(["--required-keys", "password", "--termination-log"])
        .arg(&fx.log)
        .run();
    run.assert_code(1);
    assert_log_contains(&fx, "is too long for this system", &run);
    // stderr keeps the whole path; the termination log keeps both ends.
    run.assert_stderr(&"x".repeat(300));
    assert!(!fx.log().contains(&"x".repeat(300)), "{}", fx.log());

    // A path so long that whole it would fill the kubelet's 4,096 bytes:
    // every line of the termination log still ends with its reason.
    let deep: std::path::PathBuf = std::iter::once(fx.mount.clone())
        .chain(std::iter::repeat_n("y".repeat(200).into(), 25))
        .collect();
    let run = Gate::new("check")
        .arg("--mount-path")
        .arg(&deep)
        .args(["--required-keys", "password", "--termination-log"])
        .arg(&fx.log)
        .run();
    run.assert_code(1);
    let log = fx.log();
    assert!(log.len() < 4096, "{log}");
    assert!(log.contains("use a shorter --mount-path"), "{log}");
    assert!(
        run.stderr.contains(&deep.display().to_string()),
        "{}",
        run.dump()
    );

    if is_root() {
        // Searchable by nobody: only the mount's parent is closed.
        fx.open_to_others();
        let closed = fx.root.path().join("closed");
        std::fs::create_dir_all(closed.join("mount")).unwrap();
        chmod(&closed, 0o700);
        std::fs::remove_file(&fx.log).unwrap();
        let run = Gate::new("check")
            .arg("--mount-path")
            .arg(closed.join("mount"))
            .args(["--required-keys", "password", "--termination-log"])
            .arg(&fx.log)
            .unprivileged()
            .run();
        run.assert_code(1);
        let log = fx.log();
        assert!(log.contains("permission denied"), "{log}\n{}", run.dump());
        assert!(!log.contains("does not exist"), "{log}");
    }
}

#[test]
fn a_huge_json_number_is_a_value() {
    let fx = Fixture::new();
    fx.write("s.json", format!(r#"{{"n":{}}}"#, "7".repeat(400)));
    fx.check()
        .args(["--file", "s.json", "--required-keys", "n"])
        .run()
        .assert_code(0);
}

#[test]
fn costly_yaml_is_refused_promptly() {
    let fx = Fixture::new();
    fx.write("deep.yaml", "a: ".to_owned() + &"{b: ".repeat(200_000));
    fx.write("list.yaml", "- item\n".repeat(140_000));
    let run = fx.check().args(["--file", "deep.yaml"]).run();
    run.assert_code(1);
    assert_log_contains(&fx, "nests deeper than 128 levels", &run);
    let run = fx.check().args(["--file", "list.yaml"]).run();
    run.assert_code(1);
    assert_log_contains(&fx, "YAML values", &run);
}

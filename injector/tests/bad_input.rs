//! Bad input: exit 2, nothing on stdout, a message naming the input, and
//! bounded CPU and memory (the binary runs under `ulimit -v` and `-t`, and
//! the test kills it after a wall-clock limit).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_secret-gate-injector");
/// Address space allowed to the injector (KiB).
const MEMORY_KIB: u32 = 256 * 1024;
/// CPU seconds allowed.
const CPU_SECONDS: u32 = 20;
/// Wall-clock limit, after which the run is killed and the test fails.
const WALL: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(args: &[&str], stdin: &[u8]) -> Run {
    let script = format!("ulimit -v {MEMORY_KIB}; ulimit -t {CPU_SECONDS}; exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > WALL {
            let _ = child.kill();
            panic!("the injector ran past {WALL:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_refused(r: &Run, what: &str, needles: &[&str]) {
    assert_eq!(r.code, Some(2), "{what}: exit code; stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{what}: wrote to stdout");
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "{what}: stderr lacks {n:?}: {}",
            r.stderr
        );
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn a_yaml_bomb_is_refused_within_bounds() {
    let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let r = run(&["inject"], bomb.as_bytes());
    assert_refused(&r, "yaml bomb", &["stdin: document 0: not valid YAML"]);
}

#[test]
fn a_10_mib_document_is_refused_within_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut doc = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n");
    let line = format!("  k{{}}: {}\n", "x".repeat(1000));
    let mut i = 0;
    while doc.len() < 10 << 20 {
        doc.push_str(&line.replace("{}", &i.to_string()));
        i += 1;
    }
    let path = write(tmp.path(), "big.yaml", doc.as_bytes());
    let r = run(&["inject", "-f", &path], b"");
    assert_refused(
        &r,
        "10 MiB document",
        &[&path, "document 0", "MiB", "split it"],
    );
}

#[test]
fn binary_garbage_is_refused_within_bounds() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let r = run(&["inject"], &garbage);
    assert_refused(&r, "binary garbage", &["stdin", "not UTF-8"]);
}

#[test]
fn text_garbage_and_deep_nesting_are_refused_within_bounds() {
    let r = run(&["inject"], "\u{1}\u{2}\t: : -- ]] {{ @@".as_bytes());
    assert_refused(&r, "text garbage", &["stdin: document 0"]);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = run(&["inject"], deep.as_bytes());
    assert_refused(&r, "deep JSON", &["stdin: document 0", "not valid JSON"]);
    let deep = format!("a: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = run(&["inject"], deep.as_bytes());
    assert_refused(
        &r,
        "deep YAML",
        &["stdin: document 0", "nest more than 128 deep"],
    );
}

#[test]
fn an_input_over_64_mib_is_refused_within_bounds() {
    let chunk = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n".repeat(1 << 14);
    let mut big = Vec::new();
    while big.len() <= 65 << 20 {
        big.extend_from_slice(chunk.as_bytes());
    }
    let r = run(&["inject"], &big);
    assert_refused(&r, "65 MiB stdin", &["stdin", "larger than 64 MiB"]);
}

fn opted_in(annotation: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-gate.dev/inject: \"true\"\n    \
         secret-gate.dev/mount-path: /s\n    secret-gate.dev/required-keys: k\n    {annotation}\nspec:\n  containers:\n  \
         - name: app\n    image: a:1\n    volumeMounts: [{{name: s, mountPath: /s}}]\n  volumes: [{{name: s, emptyDir: {{}}}}]\n"
    )
}

#[test]
fn an_invalid_duration_or_an_unknown_flag_is_refused_with_the_gates_message() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write(tmp.path(), "a-good.yaml", opted_in("x: y").as_bytes());
    let bad = write(
        tmp.path(),
        "b-bad.yaml",
        format!(
            "{}---\n{}",
            opted_in("x: y"),
            opted_in("secret-gate.dev/timeout: 5 fortnights")
        )
        .as_bytes(),
    );
    // One bad document among good ones: nothing at all on stdout.
    let r = run(&["inject", "-f", &good, "-f", &bad], b"");
    assert_refused(
        &r,
        "invalid duration",
        &[
            &format!("{bad}: document 1: pod/p: annotation secret-gate.dev/timeout"),
            "5 fortnights",
            "fix the annotation",
        ],
    );
    let r = run(&["inject", "-f", tmp.path().to_str().unwrap()], b"");
    assert_refused(&r, "directory with a bad file", &["b-bad.yaml: document 1"]);
    let r = run(
        &["inject"],
        opted_in("secret-gate.dev/timout: 5m").as_bytes(),
    );
    assert_refused(
        &r,
        "unknown flag",
        &[
            "stdin: document 0: pod/p: annotation secret-gate.dev/timout",
            "no --timout flag",
        ],
    );
}

#[test]
fn the_injectors_own_environment_does_not_change_the_verdict() {
    let doc = opted_in("x: y").replace("    secret-gate.dev/required-keys: k\n", "");
    // Without --required-keys or --file the gate refuses to start; an env
    // var in the injector's environment must not paper over that.
    let r = Command::new(BIN)
        .arg("inject")
        .env("SECRET_GATE_REQUIRED_KEYS", "k")
        .env("SECRET_GATE_TIMEOUT", "not-a-duration")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(doc.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(r.stdout.is_empty());
    assert!(String::from_utf8_lossy(&r.stderr).contains("nothing to wait for"));
}

#[test]
fn an_unknown_command_line_flag_is_exit_2_with_nothing_on_stdout() {
    let r = run(&["inject", "--no-such-flag"], b"");
    assert_refused(&r, "unknown CLI flag", &["--no-such-flag"]);
    let r = run(&["inject", "-f", "/nonexistent/path.yaml"], b"");
    assert_refused(
        &r,
        "missing file",
        &["/nonexistent/path.yaml", "cannot read it"],
    );
}

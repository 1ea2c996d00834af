//! Commands: preview 1 modules (WAT and C) and preview 2 command components.

use std::time::Duration;

use ledge_runtime::{Exit, Limits, Runtime};

use crate::common::*;

const FD_WRITE: &str = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;
const PROC_EXIT: &str =
    r#"(import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))"#;

fn hello_wat() -> String {
    format!(
        r#"(module {FD_WRITE}
          (memory (export "memory") 1)
          (data (i32.const 16) "hello from wat\n")
          (data (i32.const 48) "oops\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 15))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 0) (i32.const 48)) (i32.store (i32.const 4) (i32.const 5))
            (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    )
}

const SPIN: &str = r#"(module (memory (export "memory") 1)
    (func (export "_start") (loop $l (br $l))))"#;

#[tokio::test]
async fn hello_writes_both_streams_to_the_cri_log_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert_eq!(rt.name(), "wasm");
    let spec = spec(
        dir.path(),
        "hello",
        &wat_file(dir.path(), "hello", &hello_wat()),
    );
    let c = rt.start(spec.clone()).await.unwrap();
    let exit = within("hello", c.wait()).await;
    assert_eq!(exit, Exit::code(0));
    assert_eq!(exit.reason, "Completed");
    assert_eq!(stdout(&spec), ["hello from wat"]);
    assert_eq!(stderr(&spec), ["oops"]);
    // wait() again gives the same exit.
    assert_eq!(c.wait().await, exit);
}

#[tokio::test]
async fn proc_exit_code_becomes_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let wat = format!(
        r#"(module {PROC_EXIT} (memory (export "memory") 1)
            (func (export "_start") (call $proc_exit (i32.const 3))))"#
    );
    let spec = spec(dir.path(), "exit3", &wat_file(dir.path(), "exit3", &wat));
    let exit = within("exit3", rt.start(spec).await.unwrap().wait()).await;
    assert_eq!((exit.code, exit.reason.as_str()), (3, "Error"));
}

#[tokio::test]
async fn a_trap_is_reported_with_its_description() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let wat = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
    let spec = spec(dir.path(), "trap", &wat_file(dir.path(), "trap", wat));
    let exit = within("trap", rt.start(spec).await.unwrap().wait()).await;
    assert_eq!((exit.code, exit.reason.as_str()), (134, "Trap"));
    let message = exit.message.unwrap();
    assert!(message.contains("unreachable"), "{message}");
}

#[tokio::test]
async fn growing_memory_past_the_limit_is_oom_killed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    // Grows one page at a time; exits 42 if growth ever fails without a trap.
    let wat = format!(
        r#"(module {PROC_EXIT} (memory (export "memory") 1)
            (func (export "_start")
              (loop $l
                (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
                  (then (call $proc_exit (i32.const 42))))
                (br $l))))"#
    );
    let path = wat_file(dir.path(), "grow", &wat);
    let mut limited = spec(dir.path(), "grow", &path);
    limited.limits = Limits {
        memory_bytes: Some(1 << 20),
        cpu_millis: None,
    };
    let exit = within("grow", rt.start(limited).await.unwrap().wait()).await;
    assert_eq!((exit.code, exit.reason.as_str()), (137, "OOMKilled"));
    assert!(exit.message.unwrap().contains("1048576"));

    // A limit smaller than the module's initial memory: started, then OOMKilled at once.
    let wat = r#"(module (memory (export "memory") 32) (func (export "_start")))"#;
    let mut small = spec(dir.path(), "big", &wat_file(dir.path(), "big", wat));
    small.limits.memory_bytes = Some(1 << 20);
    let exit = within("big", rt.start(small).await.unwrap().wait()).await;
    assert_eq!(exit.reason, "OOMKilled");
}

#[tokio::test]
async fn stop_ends_an_infinite_loop() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let spec = spec(dir.path(), "spin", &wat_file(dir.path(), "spin", SPIN));
    let c = rt.start(spec).await.unwrap();
    // Still running: wait() does not resolve while the guest spins (and dropping it is fine).
    assert!(
        tokio::time::timeout(Duration::from_millis(50), c.wait())
            .await
            .is_err()
    );
    let exit = within("stop", c.stop(Duration::from_secs(30))).await;
    assert_eq!((exit.code, exit.signal), (143, Some(15)));
    assert_eq!(c.wait().await, exit);
}

/// A guest that never calls the host must not starve the node: on a single-threaded tokio
/// runtime, a timer still fires while it spins, with and without a CPU limit.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_yields_to_other_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let path = wat_file(dir.path(), "spin", SPIN);
    for cpu in [None, Some(100)] {
        let mut s = spec(dir.path(), "spin", &path);
        s.limits.cpu_millis = cpu;
        let c = rt.start(s).await.unwrap();
        let ticked = tokio::spawn(async { tokio::time::sleep(Duration::from_millis(30)).await });
        within("a timer beside a spinning guest", ticked)
            .await
            .unwrap();
        within("stop", c.stop(Duration::from_secs(30))).await;
    }
}

#[tokio::test]
async fn preopened_dirs_honour_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    // path_open(fd 3 = the first preopen, "new.txt", O_CREAT, rights FD_WRITE) → exit errno.
    let wat = format!(
        r#"(module {PROC_EXIT}
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "new.txt")
          (func (export "_start")
            (call $proc_exit (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7)
              (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 64)))))"#
    );
    let path = wat_file(dir.path(), "create", &wat);
    for read_only in [true, false] {
        let vol = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "create", &path);
        s.mounts = vec![mount(vol.path(), "/data", read_only)];
        let exit = within("create", rt.start(s).await.unwrap().wait()).await;
        let created = vol.path().join("new.txt").exists();
        if read_only {
            assert_ne!(exit.code, 0, "created a file in a read-only mount");
            assert!(!created);
        } else {
            assert_eq!(exit.code, 0);
            assert!(created);
        }
    }
}

#[tokio::test]
async fn a_file_mount_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let file = dir.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let mut s = spec(
        dir.path(),
        "hello",
        &wat_file(dir.path(), "hello", &hello_wat()),
    );
    s.mounts = vec![mount(&file, "/etc/file.txt", true)];
    let err = rt.start(s).await.err().expect("file mount refused");
    assert_eq!(err.reason(), "CreateContainerConfigError");
}

/// The C fixture: argv (container name first, then args), env, a file read from a read-only
/// mount, both streams, and its exit code.
/// `want_code`: the exit code seen for `return 5` (a preview 2 command can only exit ok or
/// err: `wasi:cli/exit@0.2` carries no code, so the adapter reports any failure as 1).
async fn run_c_hello(fixture_name: &str, want_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("msg.txt"), "from the volume\n").unwrap();
    let mut s = spec(dir.path(), "greeter", &fixture(fixture_name));
    s.args = vec!["/data/msg.txt".into()];
    s.env = vec![
        ("GREETING".into(), "hi there".into()),
        ("EXIT_CODE".into(), "5".into()),
    ];
    s.mounts = vec![mount(vol.path(), "/data", true)];
    let exit = within(fixture_name, rt.start(s.clone()).await.unwrap().wait()).await;
    assert_eq!(exit.code, want_code, "{exit:?} stderr={:?}", stderr(&s));
    assert_eq!(
        stdout(&s),
        [
            "hello from c",
            "argv[0]=greeter",
            "argv[1]=/data/msg.txt",
            "GREETING=hi there",
            "from the volume",
        ]
    );
    assert_eq!(stderr(&s), ["warning from c"]);

    // `command` replaces argv[0].
    let mut s = spec(dir.path(), "cmd", &fixture(fixture_name));
    s.command = vec!["greet".into()];
    let exit = within(fixture_name, rt.start(s.clone()).await.unwrap().wait()).await;
    assert_eq!(exit, Exit::code(0));
    assert!(stdout(&s).contains(&"argv[0]=greet".to_owned()));
}

#[tokio::test]
async fn c_preview1_command() {
    run_c_hello("hello-p1.wasm", 5).await;
}

#[tokio::test]
async fn c_preview2_command_component() {
    run_c_hello("hello-command.wasm", 1).await;
}

#[tokio::test]
async fn a_missing_file_in_a_mount_fails_the_guest_not_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let vol = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "greeter", &fixture("hello-p1.wasm"));
    s.args = vec!["/data/absent.txt".into()];
    s.mounts = vec![mount(vol.path(), "/data", false)];
    let exit = within("absent", rt.start(s.clone()).await.unwrap().wait()).await;
    assert_eq!(exit.code, 2);
    assert!(stderr(&s).iter().any(|l| l.starts_with("/data/absent.txt")));
}

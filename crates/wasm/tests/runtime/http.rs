//! `wasi:http` components: serving, shared listeners, refusals, draining on stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledge_runtime::{ContainerSpec, Exit, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

fn http_spec(dir: &Path, pod: &str, wasm: &Path, port: u16) -> ContainerSpec {
    let mut s = spec(dir, pod, wasm);
    s.ports = vec![local_port(port)];
    s
}

/// A copy of the hello component with another digest (a custom section appended).
fn other_image(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(fixture("hello-http.wasm")).unwrap();
    bytes.extend_from_slice(b"\x00\x05\x04ledg");
    let path = dir.join("hello-v2.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn hello_component_answers_and_logs_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = free_port();
    let s = http_spec(dir.path(), "web", &fixture("hello-http.wasm"), port);
    let c = rt.start(s.clone()).await.unwrap();
    let (status, body) = within("request", get(port, "/greet?x=1")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from ledge! You asked for /greet?x=1\n");
    assert_eq!(stdout(&s), ["GET /greet?x=1"]);
    // Running until stopped.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), c.wait())
            .await
            .is_err()
    );
    let exit = within("stop", c.stop(Duration::from_secs(10))).await;
    assert_eq!(exit, Exit::code(0));
    assert!(get(port, "/").await.is_err(), "port still open after stop");
}

#[tokio::test]
async fn replicas_of_one_image_share_the_port_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = free_port();
    let wasm = fixture("hello-http.wasm");
    let a = http_spec(dir.path(), "a", &wasm, port);
    let b = http_spec(dir.path(), "b", &wasm, port);
    let ca = rt.start(a.clone()).await.unwrap();
    let cb = rt.start(b.clone()).await.unwrap();
    for i in 0..6 {
        let (status, _) = within("request", get(port, &format!("/r{i}")))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    // Each pod logged its own share of the requests.
    let (la, lb) = (stdout(&a), stdout(&b));
    assert_eq!((la.len(), lb.len()), (3, 3), "a={la:?} b={lb:?}");

    // Another namespace is refused, naming the pod that serves the port.
    let mut foreign = http_spec(dir.path(), "d", &wasm, port);
    foreign.namespace = "other".into();
    let err = rt.start(foreign).await.err().expect("port conflict");
    assert_eq!(err.reason(), "CreateContainerError");
    assert_eq!(
        err.to_string(),
        format!("port {port} is already served by pod default/pod-a")
    );
    // Another image of the same namespace (the next version, mid-rollout) joins the rotation.
    let v2 = http_spec(dir.path(), "c", &other_image(dir.path()), port);
    let cv2 = rt.start(v2.clone()).await.unwrap();
    for i in 0..3 {
        within("request", get(port, &format!("/mixed{i}")))
            .await
            .unwrap();
    }
    assert_eq!(stdout(&v2).len(), 1, "one of three requests reached v2");
    within("stop v2", cv2.stop(Duration::from_secs(10))).await;

    // Stopping one replica leaves the other serving everything.
    assert_eq!(
        within("stop a", ca.stop(Duration::from_secs(10))).await,
        Exit::code(0)
    );
    for i in 0..3 {
        let (status, _) = within("request", get(port, &format!("/after{i}")))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(stdout(&a).len() + stdout(&b).len(), 11);

    // The last one out closes the port; then another image may take it.
    within("stop b", cb.stop(Duration::from_secs(10))).await;
    assert!(get(port, "/").await.is_err());
    let v2 = rt
        .start(http_spec(dir.path(), "v2", &other_image(dir.path()), port))
        .await
        .unwrap();
    assert_eq!(within("v2", get(port, "/")).await.unwrap().0, 200);
    within("stop v2", v2.stop(Duration::from_secs(10))).await;
}

async fn wait_for_log(s: &ContainerSpec, line: &str) {
    within("the request to reach the guest", async {
        while !stdout(s).iter().any(|l| l == line) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn stop_lets_in_flight_requests_finish_within_grace() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = free_port();
    let s = http_spec(dir.path(), "slow", &fixture("hello-http.wasm"), port);
    let c = rt.start(s.clone()).await.unwrap();
    let slow = tokio::spawn(get(port, "/slow?sleep_ms=300"));
    wait_for_log(&s, "GET /slow?sleep_ms=300").await;
    let exit = within("stop", c.stop(Duration::from_secs(60))).await;
    assert_eq!(exit, Exit::code(0));
    let (status, body) = within("slow request", slow).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("/slow?sleep_ms=300"));
}

#[tokio::test]
async fn stop_cancels_requests_still_running_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = free_port();
    let s = http_spec(dir.path(), "stuck", &fixture("hello-http.wasm"), port);
    let c = rt.start(s.clone()).await.unwrap();
    let stuck = tokio::spawn(get(port, "/stuck?sleep_ms=600000"));
    wait_for_log(&s, "GET /stuck?sleep_ms=600000").await;
    let exit = within("stop", c.stop(Duration::from_millis(100))).await;
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    // The client gets an error answer or a closed connection, not a hang.
    let answer = within("stuck request", stuck).await.unwrap();
    assert!(!matches!(answer, Ok((200, _))), "{answer:?}");
}

#[tokio::test]
async fn a_component_without_a_port_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let err = rt
        .start(spec(dir.path(), "noport", &fixture("hello-http.wasm")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "CreateContainerConfigError");
}

#[tokio::test]
async fn a_request_over_the_memory_limit_fails_with_500_and_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = free_port();
    let mut s = http_spec(dir.path(), "tiny", &fixture("hello-http.wasm"), port);
    // Less than the guest's initial memory: every request's instance is refused.
    s.limits.memory_bytes = Some(64 * 1024);
    let c = rt.start(s.clone()).await.unwrap();
    let (status, _) = within("request", get(port, "/")).await.unwrap();
    assert_eq!(status, 500);
    let errors = stderr(&s);
    assert!(
        errors.iter().any(|l| l.contains("memory limit")),
        "{errors:?}"
    );
    within("stop", c.stop(Duration::from_secs(10))).await;
}

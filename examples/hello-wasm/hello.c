// hello-wasm: a `wasi:http/proxy` component in C, served by ledge's wasm runtime.
//
// Answers every request with "Hello from ledge!" and the request's path, and writes one line per
// request ("GET /path") to stdout, which `kubectl logs` shows. A `sleep_ms=N` query parameter
// delays the answer by N milliseconds: a slow request, to watch a graceful stop drain it. Built by ./build.sh with Debian's
// clang + wasi-libc and bindings generated from the WIT that wasmtime-wasi-http ships.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

static const char *method_name(const wasi_http_types_method_t *m) {
    static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (m->tag < sizeof names / sizeof names[0]) {
        return names[m->tag];
    }
    return "OTHER";
}

static void header(wasi_http_types_own_fields_t headers, const char *name, const char *value) {
    wasi_http_types_field_name_t n;
    wasi_http_types_field_value_t v = {(uint8_t *)value, strlen(value)};
    wasi_http_types_header_error_t err;
    proxy_string_set(&n, name);
    wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &n, &v, &err);
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);

    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    proxy_string_t path = {0};
    bool has_path = wasi_http_types_method_incoming_request_path_with_query(req, &path);
    int path_len = has_path ? (int)path.len : 1;
    const char *path_ptr = has_path ? (const char *)path.ptr : "/";

    // The access log line: one per request, flushed at once (a reactor never exits, so
    // buffered output would otherwise wait for the buffer to fill).
    printf("%s %.*s\n", method_name(&method), path_len, path_ptr);
    fflush(stdout);

    // A slow request on demand (`?sleep_ms=N` or `&sleep_ms=N`).
    char query[256] = {0};
    snprintf(query, sizeof query, "%.*s", path_len, path_ptr);
    const char *sleep_ms = strstr(query, "sleep_ms=");
    if (sleep_ms && sleep_ms > query && (sleep_ms[-1] == '?' || sleep_ms[-1] == '&')) {
        usleep((useconds_t)atoi(sleep_ms + strlen("sleep_ms=")) * 1000);
    }

    char body[512];
    int body_len = snprintf(body, sizeof body, "Hello from ledge! You asked for %.*s\n", path_len, path_ptr);
    if (body_len >= (int)sizeof body) {
        body_len = sizeof body - 1;
    }
    if (has_path) {
        proxy_string_free(&path);
    }
    wasi_http_types_method_free(&method);
    wasi_http_types_incoming_request_drop_own(request);

    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    header(headers, "content-type", "text/plain; charset=utf-8");
    char length[16];
    snprintf(length, sizeof length, "%d", body_len);
    header(headers, "content-length", length);

    wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_own_outgoing_body_t out_body;
    wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(response), &out_body);

    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false, .val = {.ok = response}};
    wasi_http_types_static_response_outparam_set(response_out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(out_body), &stream)) {
        proxy_list_u8_t contents = {(uint8_t *)body, (size_t)body_len};
        wasi_io_streams_stream_error_t err;
        wasi_io_streams_method_output_stream_blocking_write_and_flush(wasi_io_streams_borrow_output_stream(stream), &contents, &err);
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t finish_err;
    wasi_http_types_static_outgoing_body_finish(out_body, NULL, &finish_err);
}

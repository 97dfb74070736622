//! Echo, byte for byte, of every size the buffer holds; one more is
//! counted as truncated and never echoed.

use super::*;

both_backends!(echo_every_size_up_to_max_datagram,);

fn echo_every_size_up_to_max_datagram(backend: &'static str) {
    // Two reflectors at once: the default buffer and a small one.
    let default = thread::spawn(move || echo_sizes(backend, None, &[0, 1, 64, 1472, 9000, 9216]));
    let small = thread::spawn(move || echo_sizes(backend, Some(512), &[0, 1, 64, 511, 512]));
    let results = [default.join(), small.join()];
    for r in results {
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }
}

fn echo_sizes(backend: &str, max_datagram: Option<usize>, sizes: &[usize]) {
    let max_arg = max_datagram.map(|m| m.to_string());
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "1"];
    if let Some(m) = &max_arg {
        args.extend(["--max-datagram", m.as_str()]);
    }
    let Some(r) = start(backend, &args) else {
        return;
    };
    let max = max_datagram.unwrap_or(9216);
    assert_eq!(
        sizes.last(),
        Some(&max),
        "the largest size tested is the buffer's"
    );
    let ctx = format!("[{backend}, --max-datagram {max}]");

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(r.addr()).unwrap();
    for (i, &n) in sizes.iter().enumerate() {
        round_trip(&client, &payload(n, i as u64 + 1), r.addr())
            .unwrap_or_else(|e| panic!("{ctx} echo of {n} bytes: {e}"));
    }

    // One byte more than the buffer holds: counted, not echoed (not even cut).
    client.send(&payload(max + 1, 99)).unwrap();
    let mut buf = vec![0u8; 65536];
    if let Some((n, _)) = recv_within(&client, &mut buf, SILENCE) {
        panic!("{ctx} a {}-byte datagram was answered with {n} bytes; it must be counted as truncated and not echoed", max + 1);
    }
    // Still answering, and nothing late from the oversized one.
    let after = payload(7, 1234);
    round_trip(&client, &after, r.addr())
        .unwrap_or_else(|e| panic!("{ctx} after the oversized datagram: {e}"));

    let s = stop_and_summarise(r);
    let t = &s["total"];
    let echoed = sizes.len() as u64 + 1;
    let echoed_bytes = sizes.iter().sum::<usize>() as u64 + after.len() as u64;
    assert_eq!(counter(t, "truncated"), 1, "{ctx} {t}");
    assert_eq!(counter(t, "rx_packets"), echoed + 1, "{ctx} {t}");
    assert_eq!(counter(t, "tx_packets"), echoed, "{ctx} {t}");
    assert_eq!(counter(t, "tx_bytes"), echoed_bytes, "{ctx} {t}");
    assert_eq!(
        counter(t, "rx_bytes"),
        echoed_bytes + max as u64 + 1,
        "{ctx} rx_bytes must count the truncated datagram at its full length: {t}"
    );
}

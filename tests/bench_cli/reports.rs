//! What bench writes: the .hgrm file, the text report, and one-line
//! errors for bad flags.

use super::*;

#[test]
fn hgrm_file_holds_the_percentile_distribution() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let path = std::env::temp_dir().join(format!("bench-cli-{}.hgrm", std::process::id()));
    let run = bench(&[
        "--target",
        &target(&s),
        "--flows",
        "1",
        "--window",
        "1",
        "--duration",
        "0.2",
        "--json",
        "--hgrm",
        path.to_str().unwrap(),
    ]);
    s.finish();
    let j = run.json();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "       Value     Percentile TotalCount 1/(1-Percentile)"
    );
    assert!(lines[2].contains(" 0.000000000000 "), "{text}");
    let total = lines.iter().find(|l| l.starts_with("#[Max")).unwrap();
    assert!(
        total.ends_with(&format!("{:>12}]", u(&j, "received"))),
        "{total} vs {j}"
    );
    let last_row = lines[lines.len() - 4];
    assert!(last_row.contains(" 1.000000000000 "), "{text}");
    let max_us: f64 = last_row.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        (max_us - j["rtt_us"]["max"].as_f64().unwrap()).abs() < 0.002,
        "{last_row} vs {j}"
    );
}

#[test]
fn the_text_report_names_every_counter() {
    let _load = exact();
    let s = Server::start("127.0.0.1:0", Behaviour::Echo).unwrap();
    let run = bench_at(&target(&s), "--flows 1 --window 1 --duration 0.1");
    s.finish();
    assert_eq!(run.status, 0, "{}", run.stderr);
    for word in [
        "sent",
        "received",
        "lost",
        "late",
        "duplicates",
        "reordered",
        "corrupt",
        "invalid",
        "p99.99",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--size", "1"], &["--size", "32"]),
        (&["--size", "70000"], &["--size"]),
        (&["--rate", "10", "--window", "2"], &["--rate", "--window"]),
        (&["--flows", "0"], &["--flows", "1..=1024"]),
        (&["--window", "0"], &["--window"]),
        (&["--timeout", "0"], &["--timeout"]),
        (&["--duration", "0"], &["--duration"]),
        (&["--cpus", "x"], &["--cpus"]),
    ];
    for (extra, words) in cases {
        let mut args = vec!["--target", "127.0.0.1:9"];
        args.extend_from_slice(extra);
        let run = bench(&args);
        assert_eq!(run.status, 2, "{extra:?}: {}", run.stderr);
        for w in *words {
            assert!(
                run.stderr.contains(w),
                "{extra:?} should name {w}: {}",
                run.stderr
            );
        }
    }
    let run = bench(&["--target", "127.0.0.1:0", "--duration", "0.1"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--target"), "{}", run.stderr);
}

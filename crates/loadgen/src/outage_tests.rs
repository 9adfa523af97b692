use super::*;
use crate::run::Sample;

fn sample(second: u64, class: Class, latency_ms: u64) -> Sample {
    Sample {
        order: 0,
        class,
        start_us: 5_000_000 + second * 1_000_000 + 100,
        latency_us: latency_ms * 1000,
    }
}

fn record() -> Record {
    Record {
        start_us: 5_000_000,
        end_us: 9_000_000,
        samples: vec![
            sample(0, Class::Ok, 10),
            sample(0, Class::Ok, 30),
            sample(1, Class::Unavailable, 1),
            sample(1, Class::Timeout, 2000),
            // A 2xx that came after the timeout (it should not: it would have been abandoned).
            sample(1, Class::Ok, 2500),
            sample(2, Class::Refused, 5),
            sample(3, Class::Ok, 20),
        ],
        exhausted: false,
        cpu_s: None,
    }
}

#[test]
fn seconds_count_each_outcome_by_arrival() {
    let rss = [
        (0.5, 100 << 20),
        (1.4, 120 << 20),
        (1.9, 110 << 20),
        (3.2, 90 << 20),
    ];
    let s = per_second(&record(), Duration::from_secs(2), &rss);
    assert_eq!(s.len(), 4);
    let counts: Vec<_> = s
        .iter()
        .map(|s| {
            let c = s.counts;
            (s.t, c.arrivals, c.ok, c.unavailable, c.timeouts, c.other)
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            (0, 2, 2, 0, 0, 0),
            (1, 3, 0, 1, 1, 1),
            (2, 1, 0, 0, 0, 1),
            (3, 1, 1, 0, 0, 0)
        ]
    );
    let p99 = s[0].p99_ok_ms.unwrap();
    assert!((p99 - 30.0).abs() < 0.1, "{p99}");
    assert_eq!(s[1].p99_ok_ms, None, "no 2xx in time, no p99");
    // The largest sample of a second counts.
    let rss: Vec<Option<f64>> = s.iter().map(|s| s.order_rss_mib).collect();
    assert_eq!(rss, [Some(100.0), Some(120.0), None, Some(90.0)]);
}

#[test]
fn summary_gives_the_peak_and_the_recovered_share() {
    let s = per_second(
        &record(),
        Duration::from_secs(2),
        &[(1.0, 50 << 20), (2.0, 70 << 20)],
    );
    let m = summarize(&s, 2);
    assert_eq!(
        (
            m.counts.arrivals,
            m.counts.ok,
            m.counts.unavailable,
            m.counts.timeouts,
            m.counts.other
        ),
        (7, 3, 1, 1, 2)
    );
    assert_eq!(m.max_order_rss_mib, 70.0);
    // From second 2 on: one refusal, one 2xx.
    assert_eq!(m.recovered_ok_share, 0.5);
    assert_eq!(summarize(&s, 10).recovered_ok_share, 0.0);
}

#[test]
fn freezing_stops_and_dropping_thaws() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let state = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while state(child.id()) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        state(child.id())
    };
    let frozen = Frozen::freeze(child.id()).unwrap();
    assert_eq!(wait_for("T"), "T");
    drop(frozen);
    assert_eq!(wait_for("S"), "S");
    child.kill().unwrap();
    child.wait().unwrap();
}

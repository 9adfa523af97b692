//! Sampling a running stack over time, for the soak: the load's throughput and p99 since the
//! last sample, each Redis's `used_memory` (`INFO memory`), each Redis's AOF and the Kafka
//! log dirs on disk (allocated blocks, as `du` counts them, under `ROOT/data/NAME`), and each
//! component group's RSS. A sample is a [`Row`] of numbers under fixed [`Columns`]; a value
//! that could not be read is NaN (an empty CSV cell).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use stack::Stack;

use crate::components;
use crate::run::Live;

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Seconds since the load started.
    pub t_s: f64,
    /// One per column.
    pub values: Vec<f64>,
}

/// The names of a row's values: `checkouts_per_s`, `p99_ms`, `errors`, `used_memory_DB`..,
/// `aof_DB`.., `kafka_dir`, `rss_GROUP`.. (bytes for memory and disk).
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    names: Vec<String>,
}

impl Columns {
    pub fn new(dbs: &[String], groups: &[String]) -> Self {
        let mut names: Vec<String> = ["checkouts_per_s", "p99_ms", "errors"]
            .map(String::from)
            .into();
        names.extend(dbs.iter().map(|db| format!("used_memory_{db}")));
        names.extend(dbs.iter().map(|db| format!("aof_{db}")));
        names.push("kafka_dir".into());
        names.extend(groups.iter().map(|g| format!("rss_{g}")));
        Columns { names }
    }

    pub fn csv_header(&self) -> String {
        format!("t_s,{}", self.names.join(","))
    }

    pub fn csv_row(&self, r: &Row) -> String {
        let cells: Vec<String> = std::iter::once(r.t_s)
            .chain(r.values.iter().copied())
            .map(|v| {
                if v.is_finite() {
                    format!("{v:.1}")
                } else {
                    String::new()
                }
            })
            .collect();
        cells.join(",")
    }

    /// The columns whose name starts with `prefix`: (index, name).
    pub fn matching<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (usize, &'a str)> {
        self.names
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.starts_with(prefix))
            .map(|(i, n)| (i, n.as_str()))
    }

    /// The sum of `r`'s values under `prefix` (NaN if one of them is missing).
    pub fn sum(&self, r: &Row, prefix: &str) -> f64 {
        self.matching(prefix).map(|(i, _)| r.values[i]).sum()
    }

    /// A line for the terminal.
    pub fn progress(&self, r: &Row) -> String {
        let mib = |prefix| self.sum(r, prefix) / (1024.0 * 1024.0);
        format!(
            "{:>3}:{:02} {:>6.0}/s p99 {:>6.1} ms, {} errors | Redis {:.1} MiB, AOF {:.1} MiB, Kafka {:.1} MiB, RSS {:.1} MiB",
            r.t_s as u64 / 60,
            r.t_s as u64 % 60,
            self.sum(r, "checkouts_per_s"),
            self.sum(r, "p99_ms"),
            self.sum(r, "errors"),
            mib("used_memory_"),
            mib("aof_"),
            mib("kafka_dir"),
            mib("rss_"),
        )
    }
}

/// Bytes allocated on disk to the files under `dir` (0 if it does not exist). Files that
/// vanish while we walk (a deleted Kafka segment) are skipped.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// `used_memory` from the text of `INFO memory`.
pub fn parse_used_memory(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Connections and paths to sample one stack.
pub struct Watch {
    redis: Vec<(String, redis::aio::MultiplexedConnection)>,
    data: PathBuf,
    columns: Columns,
    last: Instant,
}

impl Watch {
    pub async fn connect(stack: &Stack) -> Result<Self> {
        let mut redis = Vec::new();
        for db in stack
            .components()
            .into_iter()
            .filter(|c| c.ends_with("-db"))
        {
            let url = stack
                .redis_url(&db)
                .context("the stack has no such Redis")?;
            let conn = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("connecting to {db} at {url}"))?;
            redis.push((db, conn));
        }
        let dbs: Vec<String> = redis.iter().map(|(db, _)| db.clone()).collect();
        let groups: Vec<String> = components::rss_bytes(stack)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        Ok(Watch {
            redis,
            data: stack.config().data_dir(),
            columns: Columns::new(&dbs, &groups),
            last: Instant::now(),
        })
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// Samples everything now; the load's figures are those since the last sample.
    pub async fn sample(&mut self, stack: &Stack, started: Instant, live: &Live) -> Row {
        let window = live.take();
        let interval = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = Instant::now();
        let mut values = vec![
            window.requests as f64 / interval,
            crate::stats::quantile_ms(&window.latency, 0.99),
            window.errors as f64,
        ];
        let mut used = Vec::new();
        for (db, conn) in &mut self.redis {
            let mut cmd = redis::cmd("INFO");
            let info = cmd.arg("memory").query_async::<String>(conn);
            let bytes = match tokio::time::timeout(Duration::from_secs(2), info).await {
                Ok(Ok(text)) => parse_used_memory(&text),
                Ok(Err(e)) => {
                    eprintln!("  INFO memory of {db}: {e}");
                    None
                }
                Err(_) => {
                    eprintln!("  INFO memory of {db}: no answer within 2 s");
                    None
                }
            };
            used.push(bytes.map_or(f64::NAN, |b| b as f64));
        }
        values.extend(used);
        for (db, _) in &self.redis {
            values.push(disk_usage(&self.data.join(db)) as f64);
        }
        values.push(disk_usage(&self.data.join("kafka")) as f64);
        let rss = components::rss_bytes(stack);
        for (i, _) in self.columns.matching("rss_") {
            let group = &self.columns.names[i]["rss_".len()..];
            let bytes = rss.iter().find(|(g, _)| g == group).map(|(_, b)| *b);
            values.push(bytes.map_or(f64::NAN, |b| b as f64));
        }
        Row {
            t_s: started.elapsed().as_secs_f64(),
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns::new(
            &["order-db".into(), "stock-db".into()],
            &["kafka".into(), "order-*".into()],
        )
    }

    #[test]
    fn columns_and_csv_line_up() {
        let c = columns();
        assert_eq!(
            c.csv_header(),
            "t_s,checkouts_per_s,p99_ms,errors,used_memory_order-db,used_memory_stock-db,\
             aof_order-db,aof_stock-db,kafka_dir,rss_kafka,rss_order-*"
        );
        let row = Row {
            t_s: 10.0,
            values: vec![2000.0, 45.5, 0.0, 1e6, f64::NAN, 3e6, 4e6, 5e6, 6e6, 7e6],
        };
        assert_eq!(
            c.csv_row(&row),
            "10.0,2000.0,45.5,0.0,1000000.0,,3000000.0,4000000.0,5000000.0,6000000.0,7000000.0"
        );
        assert_eq!(c.sum(&row, "aof_"), 7e6);
        assert!(c.sum(&row, "used_memory_").is_nan());
        assert_eq!(
            c.matching("rss_").map(|(i, _)| i).collect::<Vec<_>>(),
            vec![8, 9]
        );
    }

    #[test]
    fn used_memory_is_parsed_from_info() {
        let info = "# Memory\r\nused_memory:1032704\r\nused_memory_human:1008.50K\r\n";
        assert_eq!(parse_used_memory(info), Some(1_032_704));
        assert_eq!(parse_used_memory("# Memory\r\n"), None);
    }

    #[test]
    fn disk_usage_counts_nested_files() {
        let dir = std::env::temp_dir().join(format!("loadgen-du-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("appendonlydir")).unwrap();
        std::fs::write(dir.join("appendonlydir/a.aof"), vec![1u8; 100_000]).unwrap();
        std::fs::write(dir.join("b"), vec![1u8; 10_000]).unwrap();
        let du = disk_usage(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!((110_000..=140_000).contains(&du), "{du}");
        assert_eq!(disk_usage(&dir), 0);
    }
}

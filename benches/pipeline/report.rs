//! The bench's results: one row per measurement, the ratios between rows, the targets, printed as one table or as JSON.

use serde::Serialize;

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Short stable key: `raw-pop3`, `raw-imap`, `mailferry`, ...
    pub key: &'static str,
    pub label: String,
    pub messages: u64,
    pub bytes: u64,
    pub secs: f64,
    /// Peak RSS in KiB, when measured.
    pub peak_rss_kib: Option<u64>,
    pub note: String,
    /// Set when the row could not be measured.
    pub error: Option<String>,
}

impl Row {
    pub fn failed(key: &'static str, label: &str, error: String) -> Row {
        Row {
            key,
            label: label.into(),
            messages: 0,
            bytes: 0,
            secs: 0.0,
            peak_rss_kib: None,
            note: String::new(),
            error: Some(error),
        }
    }

    pub fn msg_per_s(&self) -> Option<f64> {
        (self.error.is_none() && self.secs > 0.0).then(|| self.messages as f64 / self.secs)
    }

    pub fn mb_per_s(&self) -> Option<f64> {
        (self.error.is_none() && self.secs > 0.0 && self.bytes > 0)
            .then(|| self.bytes as f64 / 1e6 / self.secs)
    }
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub cores: usize,
    pub server: String,
    pub corpus: String,
    pub rows: Vec<Row>,
    /// Peak RSS of mailferry by corpus size: (messages, KiB, msg/s).
    pub rss_scaling: Vec<(u64, u64, f64)>,
    pub notes: Vec<String>,
}

/// The rows the ratio columns divide by.
const RAW: [&str; 2] = ["raw-pop3", "raw-imap"];
const NAIVE: &str = "naive";
const CHAIN: &str = "getmail+mbsync";
/// Rows that move the corpus (ratios make sense for them).
const MOVERS: [&str; 6] = [
    "raw-pop3",
    "raw-imap",
    "raw-both",
    "mailferry",
    "naive",
    "getmail+mbsync",
];

impl Report {
    fn rate(&self, key: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.key == key)?.msg_per_s()
    }

    /// msg/s of the slower raw limit.
    fn slower_raw(&self) -> Option<f64> {
        let rates: Vec<f64> = RAW.iter().filter_map(|k| self.rate(k)).collect();
        (rates.len() == RAW.len()).then(|| rates.into_iter().fold(f64::INFINITY, f64::min))
    }

    fn ratios(&self, row: &Row) -> [Option<f64>; 3] {
        if !MOVERS.contains(&row.key) {
            return [None; 3];
        }
        let mine = row.msg_per_s();
        let over = |base: Option<f64>| Some(mine? / base?);
        [
            over(self.slower_raw()),
            over(self.rate(NAIVE)),
            over(self.rate(CHAIN)),
        ]
    }

    /// (what, target, measured, met) for each target of issue #9.
    pub fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mf = self.rows.iter().find(|r| r.key == "mailferry");
        let rate = self.rate("mailferry");
        let ratio = |base: Option<f64>| Some(rate? / base?);
        let mut out = Vec::new();
        let mut push = |what: &str, value: Option<f64>, unit: &str, ok: fn(f64) -> bool| {
            let shown = value.map_or("n/a".into(), |v| format!("{v:.2}{unit}"));
            out.push((what.to_string(), shown, value.map(ok)));
        };
        push(
            "mailferry msg/s >= 5x naive",
            ratio(self.rate(NAIVE)),
            "x",
            |v| v >= 5.0,
        );
        push(
            "mailferry msg/s >= 2x getmail+mbsync",
            ratio(self.rate(CHAIN)),
            "x",
            |v| v >= 2.0,
        );
        push(
            "mailferry >= 80% of the slower raw limit",
            ratio(self.slower_raw()).map(|r| r * 100.0),
            "%",
            |v| v >= 80.0,
        );
        push(
            "  (the same against 1c, both servers at once)",
            ratio(self.rate("raw-both")).map(|r| r * 100.0),
            "%",
            |v| v >= 80.0,
        );
        push(
            "mailferry peak RSS <= 64 MB",
            mf.and_then(|r| r.peak_rss_kib).map(|k| k as f64 / 1024.0),
            " MB",
            |v| v <= 64.0,
        );
        let repoll = self.rows.iter().find(|r| r.key == "repoll-mailferry");
        let uidl = self.rows.iter().find(|r| r.key == "repoll-uidl");
        let repoll_ratio = match (repoll, uidl) {
            (Some(a), Some(b)) if a.error.is_none() && b.error.is_none() => Some(a.secs / b.secs),
            _ => None,
        };
        push(
            "no-op re-poll <= 1.5x login+UIDL (time)",
            repoll_ratio,
            "x",
            |v| v <= 1.5,
        );
        out
    }

    /// The human table.
    pub fn print_table(&self) {
        println!(
            "mailferry bench, {}, {} cores, {}",
            self.date, self.cores, self.server
        );
        println!("corpus: {}", self.corpus);
        println!();
        println!(
            "{:<46} {:>7} {:>9} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7}  note",
            "row", "msgs", "time s", "msg/s", "MB/s", "RSS MB", "x raw", "x naive", "x chain"
        );
        for row in &self.rows {
            let num = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
            let [raw, naive, chain] = self.ratios(row);
            let note = match &row.error {
                Some(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
                None => row.note.clone(),
            };
            println!(
                "{:<46} {:>7} {:>9} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7}  {}",
                row.label,
                row.messages,
                num(row.error.is_none().then_some(row.secs), 2),
                num(row.msg_per_s(), 0),
                num(row.mb_per_s(), 1),
                num(row.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
                num(raw, 2),
                num(naive, 2),
                num(chain, 2),
                note
            );
        }
        if !self.rss_scaling.is_empty() {
            println!();
            let parts: Vec<String> = self
                .rss_scaling
                .iter()
                .map(|(n, kib, rate)| {
                    format!("{n} msgs: {:.1} MB ({rate:.0} msg/s)", *kib as f64 / 1024.0)
                })
                .collect();
            println!("mailferry peak RSS by corpus size: {}", parts.join("; "));
        }
        println!();
        println!("targets (reported, not asserted):");
        for (what, value, met) in self.targets() {
            let verdict = match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            println!("  {what:<44} {value:>10}  {verdict}");
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }

    /// The same figures as one JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let [raw, naive, chain] = self.ratios(row);
                serde_json::json!({
                    "key": row.key,
                    "label": row.label,
                    "messages": row.messages,
                    "bytes": row.bytes,
                    "secs": row.secs,
                    "msg_per_s": row.msg_per_s(),
                    "mb_per_s": row.mb_per_s(),
                    "peak_rss_kib": row.peak_rss_kib,
                    "vs_slower_raw": raw,
                    "vs_naive": naive,
                    "vs_getmail_mbsync": chain,
                    "note": row.note,
                    "error": row.error,
                })
            })
            .collect();
        let targets: Vec<serde_json::Value> = self
            .targets()
            .into_iter()
            .map(|(what, value, met)| serde_json::json!({"target": what, "measured": value, "met": met}))
            .collect();
        let scaling: Vec<serde_json::Value> = self
            .rss_scaling
            .iter()
            .map(|(n, kib, rate)| serde_json::json!({"messages": n, "peak_rss_kib": kib, "msg_per_s": rate}))
            .collect();
        serde_json::json!({
            "date": self.date,
            "cores": self.cores,
            "server": self.server,
            "corpus": self.corpus,
            "rows": rows,
            "rss_scaling": scaling,
            "targets": targets,
            "notes": self.notes,
        })
    }
}

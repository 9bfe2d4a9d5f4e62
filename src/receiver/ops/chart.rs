//! The dashboard's throughput chart: stacked bars per time bucket, as inline SVG built on
//! the server (no chart library or JavaScript needed for a dozen rectangles).

use std::fmt::Write;

use crate::store::jobs::BucketCount;

pub const BUCKETS: usize = 12;
pub const BUCKET_MS: i64 = 5 * 60 * 1000;

/// Per bucket: done, failed (retry or dead), snoozed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub done: i64,
    pub failed: i64,
    pub snoozed: i64,
}

impl Bar {
    fn total(&self) -> i64 {
        self.done + self.failed + self.snoozed
    }
}

pub fn bars(rows: &[BucketCount]) -> [Bar; BUCKETS] {
    let mut out = [Bar::default(); BUCKETS];
    for r in rows {
        // The newest instant falls into bucket 12: count it in the last one.
        let index = usize::try_from(r.bucket).ok().map(|i| i.min(BUCKETS - 1));
        let Some(b) = index.and_then(|i| out.get_mut(i)) else {
            continue;
        };
        match r.outcome.as_str() {
            "done" => b.done += r.count,
            "snoozed" => b.snoozed += r.count,
            _ => b.failed += r.count,
        }
    }
    out
}

/// An accessible SVG: a title per bar says its numbers.
pub fn svg(bars: &[Bar; BUCKETS]) -> String {
    const W: i64 = 600;
    const H: i64 = 120;
    const BAR: i64 = 40;
    let step = W / BUCKETS as i64;
    let max = bars.iter().map(Bar::total).max().unwrap_or(0).max(1);
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {}\" width=\"{W}\" height=\"{}\" role=\"img\" \
         aria-label=\"Job attempts per 5 minutes over the last hour\">",
        H + 20,
        H + 20
    );
    for (i, b) in bars.iter().enumerate() {
        let x = i as i64 * step + (step - BAR) / 2;
        let mut y = H;
        let _ = write!(
            s,
            "<g><title>{} min ago: {} done, {} failed, {} snoozed</title>",
            (BUCKETS - i) * 5,
            b.done,
            b.failed,
            b.snoozed
        );
        for (n, class) in [
            (b.done, "done"),
            (b.failed, "failed"),
            (b.snoozed, "snoozed"),
        ] {
            if n == 0 {
                continue;
            }
            let h = (n * H / max).max(1);
            y -= h;
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{BAR}\" height=\"{h}\"></rect>"
            );
        }
        s.push_str("</g>");
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\"></line>\
         <text x=\"0\" y=\"{}\">−60 min</text><text x=\"{}\" y=\"{}\">now</text></svg>",
        H + 16,
        W - 28,
        H + 16
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_bars() {
        let rows = [
            BucketCount {
                bucket: 0,
                outcome: "done".into(),
                count: 4,
            },
            BucketCount {
                bucket: 0,
                outcome: "retry".into(),
                count: 1,
            },
            BucketCount {
                bucket: 0,
                outcome: "dead".into(),
                count: 1,
            },
            BucketCount {
                bucket: 11,
                outcome: "snoozed".into(),
                count: 2,
            },
            BucketCount {
                bucket: 12,
                outcome: "done".into(),
                count: 9,
            },
        ];
        let b = bars(&rows);
        assert_eq!(
            b[0],
            Bar {
                done: 4,
                failed: 2,
                snoozed: 0
            }
        );
        assert_eq!(
            b[11],
            Bar {
                done: 9,
                failed: 0,
                snoozed: 2
            }
        );
        let svg = svg(&b);
        assert_eq!(
            svg.matches("<rect").count(),
            4,
            "two bars of two parts each"
        );
        assert!(svg.contains("4 done, 2 failed, 0 snoozed"));
    }
}

//! Line charts as inline SVG for the bench's HTML report: a linear y axis from
//! zero, an x axis the caller has already scaled (seconds, or percentiles on a
//! log scale) with its own tick labels, an optional shaded band, and gaps where a
//! series has no value. Colours come from the page's CSS classes, so the same
//! chart reads in light and dark.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 270.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 42.0;
/// Series with fewer points than this get a dot on each, so a short run shows.
const MARKERS_BELOW: usize = 40;

/// One line; `None` breaks it.
pub struct Series {
    pub name: String,
    /// CSS class giving its colour (`s0`, `s1`, …).
    pub class: &'static str,
    pub points: Vec<Option<(f64, f64)>>,
}

pub struct Chart {
    /// Read by screen readers as the chart's name.
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub x_ticks: Vec<(f64, String)>,
    pub series: Vec<Series>,
    /// A shaded x range and its label (the measured window).
    pub band: Option<(f64, f64, String)>,
}

impl Chart {
    pub fn svg(&self) -> String {
        let (x_min, x_max) = self.x_range;
        let x_span = (x_max - x_min).max(f64::EPSILON);
        let highest = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().flatten().map(|(_, y)| *y))
            .fold(0.0f64, f64::max);
        let y_max = nice_ceiling(highest);
        let x = |value: f64| LEFT + (WIDTH - LEFT - RIGHT) * (value - x_min) / x_span;
        let y = |value: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - value / y_max);

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        if let Some((from, to, label)) = &self.band {
            let (left, right) = (x(from.max(x_min)), x(to.min(x_max)));
            let _ = write!(
                svg,
                r#"<rect class="band" x="{left:.1}" y="{TOP}" width="{:.1}" height="{:.1}"/><text class="band-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                (right - left).max(0.0),
                HEIGHT - TOP - BOTTOM,
                (left + right) / 2.0,
                TOP + 12.0,
                escape(label)
            );
        }
        // 1 → 0.2 steps, 2 → 0.5, 5 → 1: every label a round number.
        let leading = y_max / 10f64.powf(y_max.log10().floor());
        let steps = if (leading - 2.0).abs() < 1e-9 { 4 } else { 5 };
        for step in 0..=steps {
            let value = y_max * f64::from(step) / f64::from(steps);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                y(value),
                y(value),
                LEFT - 6.0,
                y(value) + 4.0,
                format_tick(value, y_max)
            );
        }
        for (value, label) in &self.x_ticks {
            let at = x(*value);
            // Labels at the edges stay inside the chart.
            let anchor = if *value >= x_max - x_span * 0.02 {
                "end"
            } else if *value <= x_min + x_span * 0.02 {
                "start"
            } else {
                "middle"
            };
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{at:.1}" x2="{at:.1}" y1="{TOP}" y2="{:.1}"/><text class="tick" x="{at:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis-label" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            HEIGHT - 6.0,
            escape(&self.x_label),
            TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
            escape(&self.y_label)
        );
        for series in &self.series {
            let mut path = String::new();
            let mut pen_down = false;
            let mut dots = String::new();
            let few = series.points.iter().flatten().count() < MARKERS_BELOW;
            for point in &series.points {
                match point {
                    Some((px, py)) => {
                        let _ = write!(
                            path,
                            "{}{:.1},{:.1}",
                            if pen_down { 'L' } else { 'M' },
                            x(*px),
                            y(*py)
                        );
                        pen_down = true;
                        if few {
                            let _ = write!(
                                dots,
                                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                                x(*px),
                                y(*py)
                            );
                        }
                    }
                    None => pen_down = false,
                }
            }
            let _ = write!(
                svg,
                r#"<g class="series {}"><title>{}</title><path class="line" d="{path}"/>{dots}</g>"#,
                series.class,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing to show).
pub fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 || value.is_infinite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= value * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

fn format_tick(value: f64, max: f64) -> String {
    let decimals = if max >= 10.0 {
        0
    } else if max >= 1.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}")
}

/// Text for HTML and SVG, with the five characters that matter escaped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round_numbers_above_the_data() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(51.0), 100.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn a_chart_draws_its_lines_breaks_gaps_and_escapes_text() {
        let chart = Chart {
            title: "latency <ms>".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_range: (0.0, 10.0),
            x_ticks: vec![(0.0, "0".into()), (10.0, "10".into())],
            series: vec![Series {
                name: "p99".into(),
                class: "s1",
                points: vec![Some((0.0, 1.0)), Some((1.0, 2.0)), None, Some((3.0, 4.0))],
            }],
            band: Some((2.0, 8.0, "measured".into())),
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("latency &lt;ms&gt;"));
        // Two runs: one move, one line, then a fresh move after the gap.
        let path = svg.split(r#"class="line" d=""#).nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 1, "{path}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(r#"class="band""#));
    }
}

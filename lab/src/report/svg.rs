//! A minimal SVG writer.
//!
//! The timeline is lanes, bars, marks and a few labels. plotters' SVG backend would draw them
//! too (its fallback font metrics work without system fonts), but it cannot attach a `<title>`
//! to a mark, and hovering over a red dot to read "POST #812 reset, 4.52 s" is the point of the
//! picture; this writer does that in a hundred lines. Text is plain `<text>` with a generic
//! font family, so the viewer supplies the font and no font file is needed anywhere.

use std::fmt::Write as _;

pub struct Svg {
    buf: String,
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        let mut buf = String::new();
        let _ = write!(
            buf,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>
"#
        );
        Svg { buf }
    }

    fn title(&mut self, title: Option<&str>) {
        if let Some(t) = title {
            let _ = write!(self.buf, "<title>{}</title>", esc(t));
        }
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: Option<&str>) {
        let _ = write!(
            self.buf,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{fill}">"#,
            w.max(0.5)
        );
        self.title(title);
        self.buf.push_str("</rect>\n");
    }

    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        x1: f64,
        y1: f64,
        x2: f64,
        y2: f64,
        stroke: &str,
        width: f64,
        dash: Option<&str>,
    ) {
        let dash = dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        let _ = writeln!(
            self.buf,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"{dash}/>"#
        );
    }

    pub fn circle(
        &mut self,
        cx: f64,
        cy: f64,
        r: f64,
        fill: &str,
        opacity: f64,
        title: Option<&str>,
    ) {
        let _ = write!(
            self.buf,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r}" fill="{fill}" fill-opacity="{opacity}">"#
        );
        self.title(title);
        self.buf.push_str("</circle>\n");
    }

    /// A small marker shape: `circle`, `square`, `triangle`, `diamond`, `cross`.
    pub fn marker(&mut self, shape: &str, x: f64, y: f64, r: f64, fill: &str, title: Option<&str>) {
        let points = match shape {
            "square" => format!(
                "{},{} {},{} {},{} {},{}",
                x - r,
                y - r,
                x + r,
                y - r,
                x + r,
                y + r,
                x - r,
                y + r
            ),
            "triangle" => format!("{},{} {},{} {},{}", x, y - r, x + r, y + r, x - r, y + r),
            "diamond" => format!(
                "{},{} {},{} {},{} {},{}",
                x,
                y - r,
                x + r,
                y,
                x,
                y + r,
                x - r,
                y
            ),
            "cross" => {
                let t = r / 3.0;
                format!(
                    "{},{} {},{} {},{} {},{} {},{} {},{} {},{} {},{} {},{} {},{} {},{} {},{}",
                    x - r,
                    y - r + t,
                    x - r + t,
                    y - r,
                    x,
                    y - t,
                    x + r - t,
                    y - r,
                    x + r,
                    y - r + t,
                    x + t,
                    y,
                    x + r,
                    y + r - t,
                    x + r - t,
                    y + r,
                    x,
                    y + t,
                    x - r + t,
                    y + r,
                    x - r,
                    y + r - t,
                    x - t,
                    y
                )
            }
            _ => return self.circle(x, y, r, fill, 1.0, title),
        };
        let _ = write!(self.buf, r#"<polygon points="{points}" fill="{fill}">"#);
        self.title(title);
        self.buf.push_str("</polygon>\n");
    }

    pub fn text(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: &str, fill: &str) {
        let _ = writeln!(
            self.buf,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
            esc(s)
        );
    }

    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

//! The timeline picture of one run: a lane per pod with its phases, every request as a mark
//! in the lane of the pod that answered it, and the moments that explain a loss (SIGTERM, the
//! front dropping the endpoint, lameduck drained).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::measure::record::{EventKind, Outcome, Recorder, RequestRecord};
use crate::report::svg::Svg;
use crate::report::RunSummary;

/// Phase colours, in legend order.
const PHASES: &[(&str, &str)] = &[
    ("starting", "#f2c14e"),
    ("ready", "#66bb6a"),
    ("terminating", "#9e9e9e"),
    ("lame duck", "#7e57c2"),
    ("draining", "#42a5f5"),
    ("drained", "#90caf9"),
    ("shutting down", "#ff8a65"),
];

fn phase_colour(p: &str) -> &'static str {
    PHASES
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, c)| *c)
        .unwrap_or("#cccccc")
}

/// Marker shape and colour per outcome.
fn outcome_style(o: Outcome) -> (&'static str, &'static str) {
    match o {
        Outcome::Ok => ("circle", "#2e7d32"),
        Outcome::Refused => ("square", "#d50000"),
        Outcome::Reset => ("circle", "#ff1744"),
        Outcome::Status5xx => ("triangle", "#c51162"),
        Outcome::Timeout => ("cross", "#000000"),
        Outcome::Other => ("diamond", "#795548"),
    }
}

struct Lane {
    name: String,
    /// (start, phase) in order; the last phase runs until `end`.
    phases: Vec<(f64, String)>,
    end: Option<f64>,
    containers: usize,
    exited: usize,
    /// (t, label, colour) moments.
    marks: Vec<(f64, String, &'static str)>,
    lameduck_containers: Vec<String>,
}

impl Lane {
    fn new(name: &str) -> Lane {
        Lane {
            name: name.to_string(),
            phases: Vec::new(),
            end: None,
            containers: 0,
            exited: 0,
            marks: Vec::new(),
            lameduck_containers: Vec::new(),
        }
    }

    fn enter(&mut self, t: f64, phase: &str) {
        if self.phases.last().map(|(_, p)| p.as_str()) != Some(phase) {
            self.phases.push((t, phase.to_string()));
        }
    }

    fn phase(&self) -> &str {
        self.phases.last().map(|(_, p)| p.as_str()).unwrap_or("")
    }

    fn mark(&mut self, t: f64, label: impl Into<String>, colour: &'static str) {
        self.marks.push((t, label.into(), colour));
    }

    /// What one of the pod's events shows: a phase it enters, a moment marked, or the lane's
    /// end once every container has exited.
    fn record(&mut self, t: f64, kind: &EventKind) {
        match kind {
            EventKind::PodCreated { .. } => self.enter(t, "starting"),
            EventKind::ContainerStarted {
                container, binary, ..
            } => {
                self.containers += 1;
                if binary == "lameduck" {
                    self.lameduck_containers.push(container.clone());
                }
            }
            EventKind::PodReady if self.phase() == "starting" => self.enter(t, "ready"),
            EventKind::PodUnready if self.phase() == "ready" => self.enter(t, "starting"),
            EventKind::Terminating => {
                self.enter(t, "terminating");
                self.mark(t, "deleted (preStop starts)", "#424242");
            }
            EventKind::LameduckPhase { phase } => self.lameduck_phase(t, phase),
            EventKind::Sigterm { container } => {
                self.mark(t, format!("SIGTERM {container}"), "#b71c1c");
                if !self.lameduck_containers.contains(container) {
                    self.enter(t, "shutting down");
                }
            }
            EventKind::UnexpectedExit { container, .. } => self.mark(
                t,
                format!("{container} exited without being asked (killed from outside the lab?)"),
                "#000000",
            ),
            EventKind::PreStopDone { container, outcome } => self.mark(
                t,
                format!("preStop of {container} returned: {outcome}"),
                "#00897b",
            ),
            EventKind::Sigkill { container } => {
                self.mark(t, format!("SIGKILL {container}"), "#000000")
            }
            EventKind::EndpointRemoved { front } => {
                self.mark(t, format!("endpoint removed at the {front}"), "#1565c0")
            }
            EventKind::ContainerExited { .. } => {
                self.exited += 1;
                if self.exited >= self.containers {
                    self.end = Some(t);
                }
            }
            _ => {}
        }
    }

    /// lameduck's own phases, as its /status said them.
    fn lameduck_phase(&mut self, t: f64, phase: &str) {
        match phase {
            "lame_duck" => self.enter(t, "lame duck"),
            "draining" => self.enter(t, "draining"),
            "drained" => {
                self.enter(t, "drained");
                self.mark(t, "lameduck drained", "#0d47a1");
            }
            _ => {}
        }
    }
}

/// A lane per pod, in the order the pods appeared, and the run's own moments (rollouts).
fn lanes(rec: &Recorder) -> (Vec<Lane>, Vec<(f64, String)>) {
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut global = Vec::new();
    for e in rec.events() {
        let Some(pod) = e.pod.as_deref() else {
            global.extend(run_moment(&e.kind).map(|label| (e.t, label)));
            continue;
        };
        let lane = lanes.entry(pod.to_string()).or_insert_with(|| {
            order.push(pod.to_string());
            Lane::new(pod)
        });
        lane.record(e.t, &e.kind);
    }
    (
        order.into_iter().filter_map(|n| lanes.remove(&n)).collect(),
        global,
    )
}

/// The label of an event of the whole run, not of one pod.
fn run_moment(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::RolloutStarted { rollout } => Some(format!("rollout {rollout}")),
        EventKind::RolloutComplete { rollout } => Some(format!("rollout {rollout} complete")),
        _ => None,
    }
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 10.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(raw)
}

fn describe(r: &RequestRecord) -> String {
    let mut s = format!(
        "#{} {} {} delay_ms={} at {:.3}s, {:.0} ms: {}",
        r.id,
        r.method,
        if r.reused {
            "keepalive (reused conn)"
        } else {
            r.client
        },
        r.delay_ms,
        r.start,
        (r.end - r.start) * 1000.0,
        r.outcome.label()
    );
    if let Some(st) = r.status {
        s.push_str(&format!(" {st}"));
    }
    if let Some(p) = &r.pod {
        s.push_str(&format!(" from {p}"));
    } else if let Some(p) = &r.routed_to {
        s.push_str(&format!(", routed to {p} by the service front"));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(" ({e})"));
    }
    if r.front_caused {
        s.push_str(" [lost by the front itself, before any pod]");
    }
    s
}

pub fn write_svg(path: &Path, summary: &RunSummary, rec: &Recorder) -> Result<()> {
    std::fs::write(path, render(summary, rec))
        .with_context(|| format!("writing {}", path.display()))
}

/// Where things go on the picture.
struct Plot {
    left: f64,
    right: f64,
    top: f64,
    lane_h: f64,
    width: f64,
    /// The bottom of the lanes (the "no pod named" lane included).
    bottom: f64,
    t_end: f64,
}

impl Plot {
    /// The x of time `t` (seconds of the run).
    fn x(&self, t: f64) -> f64 {
        self.left + (self.width - self.left - self.right) * t / self.t_end
    }

    /// The top of lane `i`.
    fn lane_y(&self, i: usize) -> f64 {
        self.top + self.lane_h * i as f64
    }
}

pub fn render(summary: &RunSummary, rec: &Recorder) -> String {
    let (lanes, global) = lanes(rec);
    let requests = rec.requests();
    let t_end = requests
        .iter()
        .map(|r| r.end)
        .chain(rec.events().iter().map(|e| e.t))
        .fold(1.0_f64, f64::max);
    let (top, lane_h) = (90.0, 44.0);
    let bottom = top + lane_h * (lanes.len() + 1) as f64;
    let plot = Plot {
        left: 150.0,
        right: 30.0,
        top,
        lane_h,
        width: 1400.0,
        bottom,
        t_end,
    };
    let mut svg = Svg::new(plot.width, bottom + 130.0);
    draw_title(&mut svg, summary);
    draw_grid(&mut svg, &plot, &global);
    draw_lanes(&mut svg, &plot, &lanes);
    draw_requests(&mut svg, &plot, &lanes, &requests);
    draw_legend(&mut svg, &plot);
    svg.finish()
}

/// The title and the run's numbers.
fn draw_title(svg: &mut Svg, summary: &RunSummary) {
    let kinds: Vec<String> = summary
        .failed_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    svg.text(
        20.0,
        24.0,
        &format!("{} through the {} front", summary.scenario, summary.front),
        18.0,
        "start",
        "#000",
    );
    svg.text(
        20.0,
        46.0,
        &format!(
            "{} requests, {} ok, {} failed{}  ·  p50 {:.0} ms, p99 {:.0} ms  ·  {} rollouts, {:.1} s each",
            summary.requests,
            summary.ok,
            summary.failed,
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) },
            summary.p50_ms,
            summary.p99_ms,
            summary.rollouts,
            summary.rollout_s
        ),
        13.0,
        "start",
        if summary.failed > 0 { "#b71c1c" } else { "#1b5e20" },
    );
    if let Some(e) = &summary.error {
        svg.text(
            20.0,
            64.0,
            &format!("run error: {e}"),
            12.0,
            "start",
            "#b71c1c",
        );
    }
}

/// The time grid, and the moments that concern the whole run (rollouts, load).
fn draw_grid(svg: &mut Svg, plot: &Plot, global: &[(f64, String)]) {
    let (top, bottom) = (plot.top, plot.bottom);
    let step = nice_step(plot.t_end);
    let mut t = 0.0;
    while t <= plot.t_end + 1e-9 {
        let x = plot.x(t);
        svg.line(x, top - 6.0, x, bottom, "#eeeeee", 1.0, None);
        svg.text(
            x,
            top - 10.0,
            &format!("{t:.1}s"),
            10.0,
            "middle",
            "#616161",
        );
        t += step;
    }
    for (t, label) in global {
        let x = plot.x(*t);
        svg.line(x, top, x, bottom, "#9e9e9e", 1.0, Some("4 3"));
        let dy = if label.ends_with("complete") {
            24.0
        } else {
            12.0
        };
        svg.text(x + 3.0, bottom + dy, label, 10.0, "start", "#616161");
    }
}

/// A lane per pod: its phases as bars, its moments (SIGTERM, endpoint removed...) as marks;
/// then the last lane, for requests no pod answered.
fn draw_lanes(svg: &mut Svg, plot: &Plot, lanes: &[Lane]) {
    for (i, lane) in lanes.iter().enumerate() {
        let y = plot.lane_y(i);
        if i % 2 == 0 {
            svg.rect(0.0, y, plot.width, plot.lane_h, "#fafafa", None);
        }
        svg.text(
            plot.left - 10.0,
            y + 26.0,
            &lane.name,
            12.0,
            "end",
            "#212121",
        );
        let end = lane.end.unwrap_or(plot.t_end);
        for (j, (start, phase)) in lane.phases.iter().enumerate() {
            let stop = lane.phases.get(j + 1).map(|(s, _)| *s).unwrap_or(end);
            let tip = format!("{}: {phase} from {start:.3}s to {stop:.3}s", lane.name);
            svg.rect(
                plot.x(*start),
                y + 16.0,
                plot.x(stop) - plot.x(*start),
                12.0,
                phase_colour(phase),
                Some(&tip),
            );
        }
        for (t, label, colour) in &lane.marks {
            let x = plot.x(*t);
            svg.line(x, y + 12.0, x, y + 32.0, colour, 2.0, None);
            svg.marker(
                "diamond",
                x,
                y + 12.0,
                3.5,
                colour,
                Some(&format!("{}: {label} at {t:.3}s", lane.name)),
            );
        }
    }
    let orphan_y = plot.lane_y(lanes.len());
    svg.text(
        plot.left - 10.0,
        orphan_y + 26.0,
        "no pod named",
        12.0,
        "end",
        "#616161",
    );
}

/// Requests: successes small and faint above the bar, failures large below it.
fn draw_requests(svg: &mut Svg, plot: &Plot, lanes: &[Lane], requests: &[RequestRecord]) {
    for r in requests {
        let lane = r
            .pod
            .as_ref()
            .or(r.routed_to.as_ref())
            .and_then(|p| lanes.iter().position(|l| &l.name == p))
            .unwrap_or(lanes.len());
        let y0 = plot.lane_y(lane);
        let (shape, colour) = outcome_style(r.outcome);
        let x = plot.x(r.start);
        if r.outcome == Outcome::Ok {
            svg.circle(x, y0 + 8.0, 1.6, colour, 0.35, Some(&describe(r)));
        } else {
            svg.marker(shape, x, y0 + 37.0, 4.0, colour, Some(&describe(r)));
        }
    }
}

fn draw_legend(svg: &mut Svg, plot: &Plot) {
    let ly = plot.bottom + 50.0;
    let mut lx = 20.0;
    for (name, colour) in PHASES {
        svg.rect(lx, ly - 9.0, 18.0, 10.0, colour, None);
        svg.text(lx + 22.0, ly, name, 11.0, "start", "#212121");
        lx += 30.0 + 7.0 * name.len() as f64;
    }
    let ly = ly + 22.0;
    let mut lx = 20.0;
    for o in std::iter::once(Outcome::Ok).chain(Outcome::FAILURES) {
        let (shape, colour) = outcome_style(o);
        svg.marker(shape, lx + 5.0, ly - 4.0, 4.0, colour, None);
        svg.text(lx + 14.0, ly, o.label(), 11.0, "start", "#212121");
        lx += 30.0 + 7.0 * o.label().len() as f64;
    }
    for (label, colour) in [
        ("deleted", "#424242"),
        ("SIGTERM", "#b71c1c"),
        ("endpoint removed", "#1565c0"),
        ("lameduck drained", "#0d47a1"),
        ("preStop returned", "#00897b"),
        ("SIGKILL", "#000000"),
    ] {
        svg.line(lx + 5.0, ly - 12.0, lx + 5.0, ly + 2.0, colour, 2.0, None);
        svg.text(lx + 12.0, ly, label, 11.0, "start", "#212121");
        lx += 30.0 + 7.0 * label.len() as f64;
    }
    svg.text(
        20.0,
        ly + 24.0,
        "Each request is drawn at its start time in the lane of the pod that answered (X-Served-By); failures with no answering pod in the last lane. Hover a mark for details.",
        11.0,
        "start",
        "#616161",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u64, start: f64, outcome: Outcome, pod: Option<&str>) -> RequestRecord {
        RequestRecord {
            id,
            start,
            end: start + 0.05,
            client: "keepalive",
            reused: id.is_multiple_of(2),
            retried: false,
            method: "GET",
            delay_ms: 50,
            outcome,
            status: (outcome == Outcome::Ok).then_some(200),
            pod: pod.map(str::to_string),
            error: (outcome != Outcome::Ok).then(|| "connection reset".to_string()),
            local_port: 40000 + id as u16,
            routed_to: None,
            front_caused: false,
        }
    }

    fn summary() -> RunSummary {
        RunSummary {
            scenario: "lameduck".into(),
            front: "ingress".into(),
            protected: true,
            requests: 3,
            ok: 2,
            failed: 1,
            failed_by_kind: [("reset".to_string(), 1)].into(),
            failed_by_client: BTreeMap::new(),
            failed_by_method: BTreeMap::new(),
            failed_reused: 0,
            front_caused: 0,
            retried: 0,
            disturbed: Vec::new(),
            p50_ms: 51.0,
            p99_ms: 70.0,
            rollout_s: 4.5,
            rollouts: 1,
            error: None,
        }
    }

    #[test]
    fn a_lane_per_pod_and_a_mark_per_request() {
        let rec = Recorder::new();
        for pod in ["web-1", "web-2"] {
            rec.event(
                Some(pod),
                EventKind::PodCreated {
                    ip: "127.0.9.1".into(),
                    revision: 1,
                },
            );
            rec.event(Some(pod), EventKind::PodReady);
        }
        rec.event(Some("web-1"), EventKind::Terminating);
        rec.event(
            Some("web-1"),
            EventKind::Sigterm {
                container: "lameduck".into(),
            },
        );
        rec.event(None, EventKind::RolloutComplete { rollout: 1 });
        rec.request(request(1, 0.5, Outcome::Ok, Some("web-1")));
        rec.request(request(2, 1.5, Outcome::Ok, Some("web-2")));
        rec.request(request(3, 2.5, Outcome::Reset, None));
        let svg = render(&summary(), &rec);
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..80]
        );
        assert!(svg.contains("lameduck through the ingress front"));
        assert!(svg.contains("3 requests, 2 ok, 1 failed (reset 1)"));
        for lane in ["web-1", "web-2", "no pod named"] {
            assert!(svg.contains(&format!(">{lane}<")), "lane {lane}");
        }
        assert_eq!(
            svg.matches(r#"fill-opacity="0.35""#).count(),
            2,
            "one faint dot per success"
        );
        assert!(
            svg.contains("connection reset"),
            "the failure's details in its tooltip"
        );
        if let Ok(p) = std::env::var("TIMELINE_SNAPSHOT") {
            std::fs::write(p, &svg).unwrap();
        }
    }
}

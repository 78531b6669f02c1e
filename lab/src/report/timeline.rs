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
    fn enter(&mut self, t: f64, phase: &str) {
        if self.phases.last().map(|(_, p)| p.as_str()) != Some(phase) {
            self.phases.push((t, phase.to_string()));
        }
    }
    fn phase(&self) -> &str {
        self.phases.last().map(|(_, p)| p.as_str()).unwrap_or("")
    }
}

fn lanes(rec: &Recorder) -> (Vec<Lane>, Vec<(f64, String)>) {
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut global = Vec::new();
    for e in rec.events() {
        let Some(pod) = e.pod.clone() else {
            match &e.kind {
                EventKind::RolloutStarted { rollout } => {
                    global.push((e.t, format!("rollout {rollout}")))
                }
                EventKind::RolloutComplete { rollout } => {
                    global.push((e.t, format!("rollout {rollout} complete")))
                }
                _ => {}
            }
            continue;
        };
        if !lanes.contains_key(&pod) {
            order.push(pod.clone());
            lanes.insert(
                pod.clone(),
                Lane {
                    name: pod.clone(),
                    phases: Vec::new(),
                    end: None,
                    containers: 0,
                    exited: 0,
                    marks: Vec::new(),
                    lameduck_containers: Vec::new(),
                },
            );
        }
        let lane = lanes.get_mut(&pod).expect("lane just inserted");
        let t = e.t;
        match &e.kind {
            EventKind::PodCreated { .. } => lane.enter(t, "starting"),
            EventKind::ContainerStarted {
                container, binary, ..
            } => {
                lane.containers += 1;
                if binary == "lameduck" {
                    lane.lameduck_containers.push(container.clone());
                }
            }
            EventKind::PodReady if lane.phase() == "starting" => lane.enter(t, "ready"),
            EventKind::PodUnready if lane.phase() == "ready" => lane.enter(t, "starting"),
            EventKind::Terminating => {
                lane.enter(t, "terminating");
                lane.marks
                    .push((t, "deleted (preStop starts)".into(), "#424242"));
            }
            EventKind::LameduckPhase { phase } => match phase.as_str() {
                "lame_duck" => lane.enter(t, "lame duck"),
                "draining" => lane.enter(t, "draining"),
                "drained" => {
                    lane.enter(t, "drained");
                    lane.marks.push((t, "lameduck drained".into(), "#0d47a1"));
                }
                _ => {}
            },
            EventKind::Sigterm { container } => {
                lane.marks
                    .push((t, format!("SIGTERM {container}"), "#b71c1c"));
                if !lane.lameduck_containers.contains(container) {
                    lane.enter(t, "shutting down");
                }
            }
            EventKind::UnexpectedExit { container, .. } => lane.marks.push((
                t,
                format!("{container} exited without being asked (killed from outside the lab?)"),
                "#000000",
            )),
            EventKind::PreStopDone { container, outcome } => lane.marks.push((
                t,
                format!("preStop of {container} returned: {outcome}"),
                "#00897b",
            )),
            EventKind::Sigkill { container } => {
                lane.marks
                    .push((t, format!("SIGKILL {container}"), "#000000"))
            }
            EventKind::EndpointRemoved { front } => {
                lane.marks
                    .push((t, format!("endpoint removed at the {front}"), "#1565c0"))
            }
            EventKind::ContainerExited { .. } => {
                lane.exited += 1;
                if lane.exited >= lane.containers {
                    lane.end = Some(t);
                }
            }
            _ => {}
        }
    }
    (
        order.into_iter().filter_map(|n| lanes.remove(&n)).collect(),
        global,
    )
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

pub fn render(summary: &RunSummary, rec: &Recorder) -> String {
    let (lanes, global) = lanes(rec);
    let requests = rec.requests();
    let t_end = requests
        .iter()
        .map(|r| r.end)
        .chain(rec.events().iter().map(|e| e.t))
        .fold(1.0_f64, f64::max);
    let (left, right, top, lane_h) = (150.0, 30.0, 90.0, 44.0);
    let width = 1400.0;
    let n_lanes = lanes.len() + 1;
    let plot_bottom = top + lane_h * n_lanes as f64;
    let height = plot_bottom + 130.0;
    let x = |t: f64| left + (width - left - right) * t / t_end;
    let mut svg = Svg::new(width, height);

    // Title and summary.
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

    // Time grid.
    let step = nice_step(t_end);
    let mut t = 0.0;
    while t <= t_end + 1e-9 {
        svg.line(x(t), top - 6.0, x(t), plot_bottom, "#eeeeee", 1.0, None);
        svg.text(
            x(t),
            top - 10.0,
            &format!("{t:.1}s"),
            10.0,
            "middle",
            "#616161",
        );
        t += step;
    }
    for (t, label) in &global {
        svg.line(x(*t), top, x(*t), plot_bottom, "#9e9e9e", 1.0, Some("4 3"));
        let dy = if label.ends_with("complete") {
            24.0
        } else {
            12.0
        };
        svg.text(
            x(*t) + 3.0,
            plot_bottom + dy,
            label,
            10.0,
            "start",
            "#616161",
        );
    }

    // Lanes.
    for (i, lane) in lanes.iter().enumerate() {
        let y = top + lane_h * i as f64;
        if i % 2 == 0 {
            svg.rect(0.0, y, width, lane_h, "#fafafa", None);
        }
        svg.text(left - 10.0, y + 26.0, &lane.name, 12.0, "end", "#212121");
        let end = lane.end.unwrap_or(t_end);
        for (j, (start, phase)) in lane.phases.iter().enumerate() {
            let stop = lane.phases.get(j + 1).map(|(s, _)| *s).unwrap_or(end);
            let tip = format!("{}: {phase} from {start:.3}s to {stop:.3}s", lane.name);
            svg.rect(
                x(*start),
                y + 16.0,
                x(stop) - x(*start),
                12.0,
                phase_colour(phase),
                Some(&tip),
            );
        }
        for (t, label, colour) in &lane.marks {
            svg.line(x(*t), y + 12.0, x(*t), y + 32.0, colour, 2.0, None);
            svg.marker(
                "diamond",
                x(*t),
                y + 12.0,
                3.5,
                colour,
                Some(&format!("{}: {label} at {t:.3}s", lane.name)),
            );
        }
    }
    let orphan_y = top + lane_h * lanes.len() as f64;
    svg.text(
        left - 10.0,
        orphan_y + 26.0,
        "no pod named",
        12.0,
        "end",
        "#616161",
    );

    // Requests: successes small and faint above the bar, failures large below it.
    for r in &requests {
        let lane_i = r
            .pod
            .as_ref()
            .or(r.routed_to.as_ref())
            .and_then(|p| lanes.iter().position(|l| &l.name == p));
        let y0 = match lane_i {
            Some(i) => top + lane_h * i as f64,
            None => orphan_y,
        };
        let (shape, colour) = outcome_style(r.outcome);
        if r.outcome == Outcome::Ok {
            svg.circle(x(r.start), y0 + 8.0, 1.6, colour, 0.35, Some(&describe(r)));
        } else {
            svg.marker(
                shape,
                x(r.start),
                y0 + 37.0,
                4.0,
                colour,
                Some(&describe(r)),
            );
        }
    }

    // Legend.
    let ly = plot_bottom + 50.0;
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
    svg.finish()
}

//! SVG plots of the scaling curves (plotters, SVG backend only: text is left to the viewer's
//! fonts, so no font library is needed).

use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

type Res = Result<(), Box<dyn std::error::Error>>;

fn series(points: &[Value], x: &str, y: &str) -> Vec<(f64, f64)> {
    points.iter().filter_map(|p| Some((p[x].as_f64()?, p[y].as_f64()?))).collect()
}

fn top(lines: &[&Vec<(f64, f64)>]) -> f64 {
    lines.iter().flat_map(|l| l.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.15
}

/// Jobs per second against worker (or thread) count.
pub fn workers(curves: &Value, out: &Path) -> Res {
    let pts = curves["workers"].as_array().cloned().unwrap_or_default();
    let normal = series(&pts, "workers", "cycle_normal");
    let full = series(&pts, "workers", "cycle_full");
    let add = series(&pts, "workers", "add_full");
    let root = SVGBackend::new(out, (760, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("batchdb: throughput vs workers / threads", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.5f64..8.5f64).log_scale(), 0f64..top(&[&normal, &full, &add]))?;
    chart
        .configure_mesh()
        .x_desc("workers (claim+complete) / threads (add)")
        .y_desc("jobs/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (data, label, color) in [
        (&normal, "claim+complete, durability normal", BLUE),
        (&full, "claim+complete, durability full", RED),
        (&add, "add, durability full (group commit)", GREEN),
    ] {
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// MiB/s and adds/s against payload size.
pub fn payload(curves: &Value, out: &Path) -> Res {
    let pts = curves["payload"].as_array().cloned().unwrap_or_default();
    let mib = series(&pts, "bytes", "mib_per_s");
    let ops = series(&pts, "bytes", "adds_per_s");
    let xmax = mib.iter().map(|p| p.0).fold(1000.0, f64::max) * 2.0;
    let root = SVGBackend::new(out, (760, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("batchdb: add throughput vs payload size (durability normal)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d((50f64..xmax).log_scale(), 0f64..top(&[&mib]))?
        .set_secondary_coord((50f64..xmax).log_scale(), (0.1f64..top(&[&ops])).log_scale());
    chart
        .configure_mesh()
        .x_desc("payload bytes")
        .y_desc("MiB/s")
        .x_label_formatter(&|x| human(*x))
        .draw()?;
    chart.configure_secondary_axes().y_desc("adds/s (log)").draw()?;
    chart
        .draw_series(LineSeries::new(mib.iter().copied(), BLUE.stroke_width(2)))?
        .label("MiB/s (left)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(mib.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    chart
        .draw_secondary_series(LineSeries::new(ops.iter().copied(), RED.stroke_width(2)))?
        .label("adds/s (right, log)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.draw_secondary_series(ops.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn human(x: f64) -> String {
    if x >= (1 << 20) as f64 {
        format!("{:.0}M", x / (1 << 20) as f64)
    } else if x >= 1024.0 {
        format!("{:.0}K", x / 1024.0)
    } else {
        format!("{x:.0}")
    }
}

/// Cost growth: each operation's rate, as a fraction of its rate at the smallest size, against
/// the number of jobs the database holds (both axes logarithmic). The target band (within 2×
/// of the smallest size's rate) is the dashed line at 0.5.
pub fn growth(sizes: &[Value], out: &Path) -> Res {
    let names: Vec<String> = sizes
        .first()
        .and_then(|r| r["rates_per_s"].as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let jobs = |r: &Value| r["jobs"].as_f64().unwrap_or(1.0);
    let xmin = sizes.iter().map(jobs).fold(f64::INFINITY, f64::min) / 2.0;
    let xmax = sizes.iter().map(jobs).fold(1.0, f64::max) * 2.0;
    let lines: Vec<(String, Vec<(f64, f64)>)> = names
        .iter()
        .map(|name| {
            let base = sizes[0]["rates_per_s"][name].as_f64().unwrap_or(f64::NAN);
            let pts = sizes
                .iter()
                .filter_map(|r| Some((jobs(r), r["rates_per_s"][name].as_f64()? / base)))
                .filter(|p| p.1.is_finite() && p.1 > 0.0)
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let ymin = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).fold(0.25, f64::min) / 1.5;
    let ymax = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).fold(2.0, f64::max) * 1.5;
    let root = SVGBackend::new(out, (760, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("batchdb: rate against database size (relative to the smallest)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("jobs in the database (each with its result)")
        .y_desc("rate / rate at the smallest size")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    chart.draw_series(DashedLineSeries::new([(xmin, 0.5), (xmax, 0.5)], 6, 4, BLACK.stroke_width(1)))?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

//! `steex serve`: the real binary on a free port (`--port 0`, the address read from its
//! stderr), spoken to over HTTP/1.1 with std's `TcpStream`: the page and its assets, model
//! info, demo scenes, an explanation run to the end on the bundled demo models (events,
//! result, images), uploads and masks (good and bad), the queue and cancel, a results
//! folder written by `steex explain-dir` and the refusal of every path out of it.

mod common;
mod serve_http;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::run_bin;
use serde_json::{Value, json};
use serve_http::{Server, events, png_of, read_reply, wait_job};

const FIRST_SCENE: u64 = 1 << 40;

#[test]
fn demo_scene_explained_to_the_end_with_events_images_and_region_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--demo"]);

    let page = s.get("/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<canvas id=\"query-canvas\"") && html.contains("/app.js"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");
    let js = s.get("/app.js");
    assert!(js.head.contains("text/javascript") && String::from_utf8_lossy(&js.body).contains("EventSource"));
    assert!(s.get("/style.css").head.contains("text/css"));

    let info = s.get("/api/info").ok_json(200);
    assert_eq!(info["mode"], "demo");
    assert_eq!((info["height"].as_u64(), info["width"].as_u64()), (Some(64), Some(64)));
    assert_eq!(info["attributes"], json!(["stop"]));
    let names: Vec<&str> = info["regions"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sky", "ground", "building", "pole", "lamp"]);
    assert_eq!(info["results"], false);

    let scenes = s.get("/api/scenes").ok_json(200);
    let list = scenes["scenes"].as_array().unwrap();
    assert_eq!(list.len(), 12);
    assert_eq!(list[0]["seed"], FIRST_SCENE);
    assert_eq!(s.get(list[0]["image"].as_str().unwrap()).image().width(), 64);

    let q = s.request("POST", &format!("/api/queries?scene={FIRST_SCENE}"), None, b"").ok_json(201);
    let id = q["id"].as_str().unwrap().to_string();
    assert_eq!(q["labels_source"], "scene");
    let p0 = q["probabilities"][0].as_f64().unwrap();
    assert_eq!(p0 >= 0.5, list[0]["stop"].as_bool().unwrap(), "the decision model follows the rule: {q}");
    assert!(q["regions_present"].as_array().unwrap().iter().any(|r| r["name"] == "lamp"), "{q}");
    let labels = s.get(q["labels"].as_str().unwrap()).image();
    assert!(matches!(labels, image::DynamicImage::ImageLuma8(_)) && labels.width() == 64);
    assert!(labels.to_luma8().pixels().any(|p| p.0[0] == 4), "the lamp's id is in the label map");
    assert_eq!(s.get(q["overlay"].as_str().unwrap()).image().height(), 64);

    let job = s
        .post_json(
            "/api/jobs",
            &json!({"query": id, "regions": ["lamp"], "steps": 40, "early_stop": 5, "frame_every": 4}),
        )
        .ok_json(202);
    let job_id = job["job"].as_str().unwrap().to_string();
    assert_eq!(job["position"], 0);

    // The stream replays from the start and ends after the final event.
    let ev = events(&s.get(job["events"].as_str().unwrap()).body);
    let kinds: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"queued"), "{kinds:?}");
    assert!(kinds.contains(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let steps: Vec<&Value> = ev.iter().filter(|(n, _)| n == "step").map(|(_, d)| d).collect();
    assert!(!steps.is_empty());
    for (i, d) in steps.iter().enumerate() {
        assert_eq!(d["step"], i + 1);
        let score = d["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{d}");
    }
    let done = &ev.last().unwrap().1;
    let p1 = done["final_probability"].as_f64().unwrap();
    assert!((done["initial_probability"].as_f64().unwrap() - p0).abs() < 1e-4, "{done}");
    // The lamp alone flips the decision on the demo's models (lamp only: success 1.000).
    assert_eq!(done["success"], true, "p {p0} -> {p1}: {done}");
    assert_eq!(p1 >= 0.5, p0 < 0.5, "p {p0} -> {p1}");
    let first_score = steps[0]["score"].as_f64().unwrap();
    let last_score = steps.last().unwrap()["score"].as_f64().unwrap();
    assert!((last_score - first_score).abs() > 0.2, "the score moved along the steps: {first_score} -> {last_score}");
    let result = &done["result"];
    assert_eq!(result["regions"], json!([{"id": 4, "name": "lamp"}]));
    let change = result["region_change"].as_array().unwrap();
    assert_eq!(change.len(), 5);
    let lamp = &change[4];
    assert_eq!(lamp["name"], "lamp");
    for other in &change[..4] {
        assert_eq!(other["code_distance"].as_f64(), Some(0.0), "only the lamp's code moves: {other}");
    }
    assert!(lamp["code_distance"].as_f64().unwrap() > 0.0 && lamp["share"].as_f64().unwrap() > 0.5, "{lamp}");
    let steps_run = done["steps_run"].as_u64().unwrap() as usize;
    assert!((1..=40).contains(&steps_run));
    let frames = done["frames"].as_array().unwrap();
    assert_eq!(frames.len(), steps.len() / 4, "a frame every 4 steps: {frames:?}");
    for name in ["query", "reconstruction", "counterfactual", "difference"] {
        let img = s.get(done["images"][name].as_str().unwrap()).image();
        assert_eq!((img.width(), img.height()), (64, 64), "{name}");
    }
    let rec = s.get(done["images"]["reconstruction"].as_str().unwrap()).image().to_rgb8();
    let cf = s.get(done["images"]["counterfactual"].as_str().unwrap()).image().to_rgb8();
    assert_ne!(rec, cf, "the counterfactual differs from the reconstruction");
    if let Some(f) = frames.first() {
        assert_eq!(s.get(f["url"].as_str().unwrap()).image().width(), 64);
    }
    let status = s.get(&format!("/api/jobs/{job_id}")).ok_json(200);
    assert_eq!(status["status"], "done");
    assert_eq!(status["points"].as_array().unwrap().len(), steps.len());
    assert_eq!(status["result"]["success"], true);
}

#[test]
fn bad_uploads_masks_and_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--demo"]);

    s.request("POST", "/api/queries", Some("image/png"), b"this is not an image").assert_error(415, "PNG or JPEG");
    s.request("POST", "/api/queries", Some("image/png"), b"").assert_error(400, "empty");
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    s.request("POST", "/api/queries", Some("application/octet-stream"), gif).assert_error(415, "PNG or JPEG");
    // A PNG cut short: recognised, not decodable.
    let good = png_of(image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(96, 48, image::Rgb([40, 90, 200]))));
    s.request("POST", "/api/queries", Some("image/png"), &good[..good.len() / 2]).assert_error(422, "cannot decode");
    // Bodies of a type another site's page could send unasked are refused (no CSRF).
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")] {
        s.request("POST", "/api/queries", ct, &good).assert_error(415, "Content-Type");
    }
    // Over 16 MiB: refused from its declared length, before it is read.
    {
        let mut t = TcpStream::connect(&s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let len = 17 * 1024 * 1024;
        let head = format!(
            "POST /api/queries HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: image/png\r\nContent-Length: {len}\r\n\r\n",
            s.addr
        );
        t.write_all(head.as_bytes()).unwrap();
        let _ = t.write_all(&vec![0u8; 64 * 1024]);
        read_reply(&mut t).assert_error(413, "16777216 bytes");
    }

    // A good upload of another size and shape: segmented, scored.
    let q = s.request("POST", "/api/queries", Some("image/png"), &good).ok_json(201);
    assert_eq!(q["labels_source"], "segmenter");
    assert_eq!((q["width"].as_u64(), q["height"].as_u64()), (Some(96), Some(48)));
    assert_eq!(q["probabilities"].as_array().unwrap().len(), 1);
    let id = q["id"].as_str().unwrap();
    let mask_url = format!("/api/queries/{id}/mask");
    let gray = |w: u32, h: u32, v: u8| {
        png_of(image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(w, h, image::Luma([v]))))
    };
    s.request("PUT", &mask_url, Some("text/plain"), &gray(48, 24, 1)).assert_error(415, "Content-Type");
    s.request("PUT", &mask_url, Some("image/png"), &gray(50, 50, 1)).assert_error(422, "aspect ratios differ");
    s.request("PUT", &mask_url, Some("image/png"), &gray(48, 24, 9)).assert_error(422, "label id 9");
    s.request("PUT", &mask_url, Some("image/png"), &good).assert_error(422, "8-bit single-channel");
    let q = s.request("PUT", &mask_url, Some("image/png"), &gray(192, 96, 2)).ok_json(200);
    assert_eq!(q["labels_source"], "mask");
    assert_eq!(q["regions_present"], json!([{"id": 2, "name": "building", "pixels": 64 * 64}]));

    // Job requests.
    s.request("POST", "/api/jobs", Some("application/json"), b"{not json").assert_error(400, "not the JSON expected");
    s.post_json("/api/jobs", &json!({"query": "q999"})).assert_error(404, "q999");
    let body = json!({"query": id}).to_string();
    s.request("POST", "/api/jobs", Some("text/plain"), body.as_bytes()).assert_error(415, "application/json");
    s.post_json("/api/jobs", &json!({"query": id, "regions": ["moon"]})).assert_error(400, "moon");
    s.post_json("/api/jobs", &json!({"query": id, "regions": []})).assert_error(400, "at least one region");
    s.post_json("/api/jobs", &json!({"query": id, "steps": 0})).assert_error(400, "steps 0");
    s.post_json("/api/jobs", &json!({"query": id, "lr": -1.0})).assert_error(400, "lr -1");
    s.post_json("/api/jobs", &json!({"query": id, "attribute": "smile"})).assert_error(400, "smile");
    s.post_json("/api/jobs", &json!({"query": id, "stepz": 3})).assert_error(400, "stepz");
    s.get("/api/jobs/j999").assert_error(404, "j999");
    s.get("/api/jobs/j1/images/query.png").assert_error(404, "j1");
    s.get("/api/queries/q1/secret.png").assert_error(404, "image.png");
    s.get("/api/results").assert_error(404, "--results");
    s.get("/no/such/page").assert_error(404, "no such page");
    s.request("PUT", "/api/info", Some("application/json"), b"{}").assert_error(405, "PUT");
    s.get(&format!("/api/queries/{id}/mask")).assert_error(405, "GET");
    s.get("/api/scenes/abc/image.png").assert_error(400, "seed");

    // A local-only server answers loopback host names only (no DNS rebinding).
    for host in ["evil.example", "evil.example:80", "10.1.2.3"] {
        let mut t = TcpStream::connect(&s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!("GET /api/info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        t.write_all(head.as_bytes()).unwrap();
        read_reply(&mut t).assert_error(403, "localhost or 127.0.0.1 only");
    }
    let port = s.addr.rsplit(':').next().unwrap();
    let mut t = TcpStream::connect(&s.addr).unwrap();
    let head = format!("GET /api/info HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    t.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut t).ok_json(200)["mode"], "demo");
}

#[test]
fn queued_and_running_jobs_are_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--demo"]);
    let q = s.request("POST", &format!("/api/queries?scene={}", FIRST_SCENE + 1), None, b"").ok_json(201);
    let long =
        json!({"query": q["id"], "steps": 2000, "frame_every": 0, "regions": ["sky", "ground", "building", "pole"]});
    let a = s.post_json("/api/jobs", &long).ok_json(202);
    let a_id = a["job"].as_str().unwrap().to_string();
    wait_job(&s, &a_id, |v| v["status"] == "running" && v["step"].as_u64().is_some());
    let b = s.post_json("/api/jobs", &long).ok_json(202);
    let b_id = b["job"].as_str().unwrap().to_string();
    assert_eq!(b["position"], 1, "one job runs ahead of it");
    let v = s.get(&format!("/api/jobs/{b_id}")).ok_json(200);
    assert_eq!((v["status"].as_str(), v["position"].as_u64()), (Some("queued"), Some(1)));

    // The queued one leaves the queue at once, never started.
    let c = s.request("DELETE", &format!("/api/jobs/{b_id}"), None, b"").ok_json(200);
    assert_eq!(c["status"], "cancelled");
    let ev = events(&s.get(&format!("/api/jobs/{b_id}/events")).body);
    let kinds: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kinds, ["queued", "cancelled"]);

    // The running one stops after its current step, with the result of the steps run.
    s.request("DELETE", &format!("/api/jobs/{a_id}"), None, b"").ok_json(200);
    let v = wait_job(&s, &a_id, |v| v["status"] != "running");
    assert_eq!(v["status"], "cancelled", "{v}");
    let run = v["result"]["steps_run"].as_u64().unwrap();
    assert!((1..2000).contains(&run), "stopped early: {run} steps");
    assert_eq!(s.get(&format!("/api/jobs/{a_id}/images/counterfactual.png")).image().width(), 64);
    let ev = events(&s.get(&format!("/api/jobs/{a_id}/events")).body);
    assert_eq!(ev.last().map(|(n, _)| n.as_str()), Some("cancelled"));

    // The server takes the next job after a cancel.
    let quick = json!({"query": q["id"], "steps": 3, "frame_every": 1});
    let d = s.post_json("/api/jobs", &quick).ok_json(202);
    let v = wait_job(&s, d["job"].as_str().unwrap(), |v| v["status"] == "done");
    assert_eq!(v["result"]["frames"].as_array().unwrap().len(), 3);
}

/// Two demo scenes as PNG files with their masks, for `explain-dir`.
fn scene_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for (name, seed) in [("a", FIRST_SCENE), ("b", FIRST_SCENE + 2)] {
        let sc = steex::synth::scene::scene(seed);
        std::fs::write(dir.join(format!("images/{name}.png")), steex::io::png_bytes(&sc.image, 64, 64)).unwrap();
        std::fs::write(dir.join(format!("masks/{name}.png")), steex::io::gray_png(&sc.labels, 64, 64)).unwrap();
    }
}

#[test]
fn results_folder_is_listed_and_no_path_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    scene_files(d);
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/synthetic");
    let g = assets.join("generator.safetensors");
    let c = assets.join("classifier.safetensors");
    let (g, c) = (g.to_str().unwrap(), c.to_str().unwrap());
    let r = run_bin(
        d,
        "steex",
        &[
            "explain-dir",
            "--images",
            "images",
            "--masks",
            "masks",
            "--generator",
            g,
            "--classifier",
            c,
            "--attribute",
            "stop",
            "--steps",
            "3",
            "--lr",
            "0.3",
            "--out",
            "results",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // A secret beside the folder, and a link from inside the folder to outside it.
    std::fs::write(d.join("secret.png"), b"SECRET").unwrap();
    std::fs::create_dir_all(d.join("outside")).unwrap();
    std::fs::write(d.join("outside/query.png"), b"SECRET").unwrap();
    std::fs::remove_dir_all(d.join("results/b")).unwrap();
    std::os::unix::fs::symlink(d.join("outside"), d.join("results/b")).unwrap();

    let s = Server::start(d, &["--results", "results"]);
    let info = s.get("/api/info").ok_json(200);
    assert_eq!((info["mode"].as_str(), info["results"].as_bool()), (Some("results"), Some(true)));
    s.get("/api/scenes").assert_error(404, "--demo");
    let list = s.get("/api/results").ok_json(200);
    assert_eq!(list["attribute"], "stop");
    assert_eq!(list["summary"]["n_images"], 2);
    let images = list["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for im in images {
        assert_eq!(im["status"], "ok");
        assert_eq!(im["steps_run"], 3);
        let (a, b) = (im["initial_score"].as_f64().unwrap(), im["final_score"].as_f64().unwrap());
        assert!((im["score_change"].as_f64().unwrap() - (b - a)).abs() < 1e-5, "{im}");
    }
    let url = images[0]["files"]["counterfactual"].as_str().unwrap();
    assert_eq!(url, "/api/results/a/counterfactual.png");
    let served = s.get(url);
    assert_eq!(served.body, std::fs::read(d.join("results/a/counterfactual.png")).unwrap());
    assert_eq!(served.image().width(), 64);

    let secret = d.join("secret.png");
    let abs = secret.to_str().unwrap();
    let enc = |p: &str| p.replace('/', "%2F");
    let refused = [
        "/api/results/../secret.png".to_string(),
        "/api/results/%2e%2e/secret.png".to_string(),
        "/api/results/%2E%2E/query.png".to_string(),
        "/api/results/..%2Fsecret.png/query.png".to_string(),
        "/api/results/..%2F..%2Fsecret/query.png".to_string(),
        "/api/results/a/..%2F..%2Fsecret.png".to_string(),
        "/api/results/a/%2e%2e%2f%2e%2e%2fsecret.png".to_string(),
        format!("/api/results/{}/query.png", enc(abs)),
        format!("/api/results/a/{}", enc(abs)),
        "/api/results/%2Fetc%2Fpasswd/query.png".to_string(),
        "/api/results/..%5C..%5Csecret/query.png".to_string(),
        "/api/results/a/result.json".to_string(),
        "/api/results/a/z_final.npy".to_string(),
        "/api/results/.hidden/query.png".to_string(),
        "/api/results/nosuch/query.png".to_string(),
        // Listed in results.jsonl, but its folder is a link out of the results folder.
        "/api/results/b/query.png".to_string(),
        "/api/results//query.png".to_string(),
    ];
    for path in &refused {
        let r = s.get(path);
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert!(!String::from_utf8_lossy(&r.body).contains("SECRET"), "{path} leaked");
        assert!(r.json()["error"].is_string(), "{path}: {}", String::from_utf8_lossy(&r.body));
    }
}

#[test]
fn models_from_files_and_refusals_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/synthetic");
    let f = |n: &str| assets.join(n).to_str().unwrap().to_string();
    let s =
        Server::start(d, &["--generator", &f("generator.safetensors"), "--classifier", &f("classifier.safetensors")]);
    let info = s.get("/api/info").ok_json(200);
    assert_eq!(info["mode"], "files");
    assert_eq!(info["segmenter"], false);
    assert_eq!(info["attributes"], json!(["stop"]));
    assert_eq!(info["regions"][4]["name"], "lamp", "names from the generator's metadata: {info}");
    // No segmenter: an upload waits for its mask.
    let sc = steex::synth::scene::scene(FIRST_SCENE);
    let q = s.request("POST", "/api/queries", Some("image/png"), &steex::io::png_bytes(&sc.image, 64, 64));
    let q = q.ok_json(201);
    assert_eq!(q["labels_source"], Value::Null);
    let id = q["id"].as_str().unwrap();
    s.post_json("/api/jobs", &json!({"query": id})).assert_error(409, "mask");
    let mask = steex::io::gray_png(&sc.labels, 64, 64);
    let q = s.request("PUT", &format!("/api/queries/{id}/mask"), Some("image/png"), &mask);
    assert_eq!(q.ok_json(200)["labels_source"], "mask");
    let j = s.post_json("/api/jobs", &json!({"query": id, "steps": 2, "regions": [4]})).ok_json(202);
    let v = wait_job(&s, j["job"].as_str().unwrap(), |v| v["status"] == "done");
    assert_eq!(v["result"]["result"]["regions"], json!([{"id": 4, "name": "lamp"}]));
    drop(s);

    // Refused before any model loads, naming the argument.
    let r = run_bin(d, "steex", &["serve", "--port", "0", "--results", "nowhere"]);
    common::assert_fails(&r, &["nowhere"]);
    let r = run_bin(d, "steex", &["serve", "--port", "0"]);
    common::assert_fails(&r, &["--demo"]);
    let r = run_bin(d, "steex", &["serve", "--port", "0", "--generator", "no.safetensors", "--classifier", "c"]);
    common::assert_fails(&r, &["no.safetensors"]);
    let r = run_bin(d, "steex", &["serve", "--port", "0", "--demo", "--bind", "localhost:3"]);
    common::assert_fails(&r, &["--bind"]);
}

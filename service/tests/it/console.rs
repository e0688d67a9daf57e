//! The web console end to end: the real `saring serve` binary, headless Chromium driven over WebDriver
//! (chromedriver), and the real gRPC API beside it. Set `SARING_SCREENSHOTS=DIR` to save the views as PNGs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use saring::auth::Role;
use saring::proto;

use crate::common::process::{unique_prefix, ClosedPort, SaringProcess};
use crate::common::{connect, escalations, sample_contact, screening, token, Bearer};
use crate::ladder::{call, decide, deliver, prank};

/// chromedriver and one headless Chromium session.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/browser.sh installs Debian's chromium-driver)");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(unique_prefix("chromium").replace(':', "-"));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,900", format!("--user-data-dir={}", profile.display())]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a headless Chromium session starts");
        Browser { client, driver }
    }

    pub(crate) async fn sign_in(&self, console: &str, role: Role) {
        self.client.goto(&format!("{console}/login")).await.unwrap();
        self.client.find(Locator::Id("token")).await.unwrap().send_keys(&token(role)).await.unwrap();
        self.client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    }

    /// Waits (up to a minute; the machine may be busy) for an element.
    pub(crate) async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                let url = self.client.current_url().await.map(|url| url.to_string()).unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                panic!("{css} never appeared ({error}) on {url}:\n{source}");
            }
        }
    }

    pub(crate) async fn script(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Every resource the page loaded comes from the console's own origin.
    async fn assert_no_external_requests(&self) {
        let origin = self.script("return location.origin").await;
        let resources = self.script("return performance.getEntriesByType('resource').map(e => e.name)").await;
        let origin = origin.as_str().unwrap();
        for resource in resources.as_array().unwrap() {
            let url = resource.as_str().unwrap();
            assert!(url.starts_with(origin), "the page requested {url}, outside {origin}");
        }
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("SARING_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A band's word on the badge, in the console's language `lang` ("id" or "en").
fn band_word(band: proto::Band, lang: &str) -> &'static str {
    match (band, lang) {
        (proto::Band::Low, "id") => "RENDAH",
        (proto::Band::Elevated, "id") => "WASPADA",
        (proto::Band::High, "id") => "TINGGI",
        (proto::Band::Unspecified, "id") => "TANPA SKOR",
        (proto::Band::Low, _) => "LOW",
        (proto::Band::Elevated, _) => "ELEVATED",
        (proto::Band::High, _) => "HIGH",
        (proto::Band::Unspecified, _) => "NO SCORE",
    }
}

/// The row's badge reads the band's word and the likelihood of `reply`, and has the band's colour.
async fn assert_row_shows(row: &fantoccini::elements::Element, reply: &proto::ScoreReply, lang: &str) {
    let band = proto::Band::try_from(reply.band).unwrap();
    let badge = row.find(Locator::Css(".badge")).await.unwrap();
    let percent = (reply.prank_likelihood * 100.0).round();
    assert_eq!(badge.text().await.unwrap(), format!("{} {percent}%", band_word(band, lang)));
    let class = match band {
        proto::Band::Low => "band-low",
        proto::Band::Elevated => "band-elevated",
        proto::Band::High => "band-high",
        proto::Band::Unspecified => "band-none",
    };
    assert!(badge.attr("class").await.unwrap().unwrap().contains(class));
}

/// The row shows the reasons of `reply` (scored in the page's language) an operator should read: at most three,
/// strongest first, only material and not routine ones, each marked by the direction it moved the score.
async fn assert_reasons_shown(row: &fantoccini::elements::Element, reply: &proto::ScoreReply) {
    let mut expected: Vec<(String, bool)> = Vec::new();
    for reason in reply.reasons.iter().filter(|reason| reason.material && !reason.routine) {
        if expected.len() < 3 && !expected.iter().any(|(text, _)| *text == reason.sentence) {
            expected.push((reason.sentence.clone(), reason.contribution > 0.0));
        }
    }
    assert!(!expected.is_empty(), "the contact has something worth saying: {:?}", reply.reasons);
    let mut shown = Vec::new();
    for item in row.find_all(Locator::Css(".reasons li")).await.unwrap() {
        let text = item.text().await.unwrap();
        let up = item.attr("class").await.unwrap().unwrap_or_default() == "up";
        let marker = if up { "▲ " } else { "▼ " };
        shown.push((text.strip_prefix(marker).unwrap_or_else(|| panic!("{text:?} has no {marker:?}")).to_owned(), up));
    }
    assert_eq!(shown, expected);
}

/// One raw HTTP/1.1 GET: the response head and body as text.
fn http_get(console: &str, path: &str) -> String {
    let address = console.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test]
async fn an_operator_sees_badges_live_records_a_disposition_and_is_refused_the_legal_view() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let browser = Browser::start().await;

    browser.sign_in(&console, Role::Operator).await;
    browser.wait_for("#feed[data-connected='1']").await;
    assert!(browser.client.current_url().await.unwrap().path().ends_with("/operator"));

    // A contact scored over gRPC appears in the feed with its badge: the band's word, in Indonesian by default, and
    // the likelihood; the time with its zone; at most three reasons, the material and not routine ones, in Indonesian.
    let contact = sample_contact("console-contact-1", Some("081234567001"));
    let reply = routing.score_contact(contact.clone()).await.unwrap().into_inner();
    let row = browser.wait_for("#feed tr[data-contact-id='console-contact-1']").await;
    assert_row_shows(&row, &reply, "id").await;
    assert_eq!(row.find(Locator::Css(".zone")).await.unwrap().text().await.unwrap(), "WITA");
    let indonesian = proto::ContactRequest { language: proto::Language::Indonesian as i32, ..contact.clone() };
    let reply_id = routing.score_contact(indonesian).await.unwrap().into_inner();
    assert_reasons_shown(&row, &reply_id).await;
    let option = browser.client.find(Locator::Css("#disposition option[value='prank']")).await.unwrap();
    assert_eq!(option.html(true).await.unwrap(), "iseng", "dispositions are in Indonesian");

    // Clicking it shows the caller's history; the disposition form records the outcome the RecordOutcome way.
    row.click().await.unwrap();
    let history = browser.wait_for("#history[data-contact-id='console-contact-1']").await;
    let history = history.text().await.unwrap();
    assert!(history.contains("total kontak") && history.contains("iseng/kasar 30 hari"), "{history}");
    browser.client.find(Locator::Css("#disposition option[value='prank']")).await.unwrap().click().await.unwrap();
    browser.client.find(Locator::Id("record")).await.unwrap().click().await.unwrap();
    browser.wait_for("#record-result.ok[data-contact-id='console-contact-1']").await;
    let profile = routing.get_caller(proto::CallerQuery { caller: "081234567001".into() }).await.unwrap_err().code();
    assert_eq!(profile, tonic::Code::PermissionDenied, "routing may not read profiles");
    let operator_grpc = screening(&channel, Bearer::of(Role::Operator));
    let profile = operator_grpc
        .clone()
        .get_caller(proto::CallerQuery { caller: "081234567001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.history.unwrap().total_contacts, 1);
    assert!(profile.dispositions_month.get("prank").copied().unwrap_or(0.0) > 0.9, "{:?}", profile.dispositions_month);

    // 300 contacts as fast as gRPC takes them: the page batches them and keeps at most 200 rows.
    let mut senders = Vec::new();
    for worker in 0..4 {
        let mut client = routing.clone();
        senders.push(tokio::spawn(async move {
            for index in 0..75 {
                let contact = sample_contact(&format!("burst-{worker}-{index}"), None);
                client.score_contact(contact).await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let mut seen = 0;
    for _ in 0..600 {
        let counts = browser
            .script("const f = document.getElementById('feed'); return [Number(f.dataset.received || 0), Number(f.dataset.skipped || 0), f.rows.length]")
            .await;
        let counts: Vec<u64> = counts.as_array().unwrap().iter().map(|value| value.as_u64().unwrap()).collect();
        assert!(counts[2] <= 200, "the list is capped: {counts:?}");
        seen = counts[0] + counts[1];
        if seen >= 301 {
            assert_eq!(counts[2], 200);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 301, "the page received {seen} of 301 contacts");
    browser.screenshot("console-operator.png").await;
    browser.assert_no_external_requests().await;

    // The band filter hides the rows below the band chosen and shows them again. (The burst's band depends on the
    // hour the test runs: the filter chosen is the one above it.)
    let burst = browser.wait_for("#feed tr[data-contact-id='burst-0-74']").await;
    let band = burst.attr("data-band").await.unwrap().unwrap();
    let (above, hidden) = match band.as_str() {
        "low" => ("elevated", true),
        "elevated" => ("high", true),
        _ => ("high", false),
    };
    let choose = |value: &'static str| {
        let client = browser.client.clone();
        async move {
            let option = format!("#band-filter option[value='{value}']");
            client.find(Locator::Css(&option)).await.unwrap().click().await.unwrap();
        }
    };
    choose(above).await;
    assert_eq!(burst.is_displayed().await.unwrap(), !hidden, "a {band} row under the filter {above}");
    choose("").await;
    assert!(burst.is_displayed().await.unwrap());

    // Pause: the list stands still, new contacts wait and are counted; resume shows them.
    let pause = browser.wait_for("#pause").await;
    assert_eq!(pause.text().await.unwrap(), "Jeda");
    pause.click().await.unwrap();
    assert_eq!(pause.text().await.unwrap(), "Lanjutkan");
    routing.score_contact(sample_contact("while-paused", None)).await.unwrap();
    let queued = browser.wait_for("#queued[data-count='1']").await;
    assert!(queued.text().await.unwrap().starts_with("1 baru menunggu"), "{}", queued.text().await.unwrap());
    assert!(browser.client.find(Locator::Css("#feed tr[data-contact-id='while-paused']")).await.is_err());
    pause.click().await.unwrap();
    browser.wait_for("#feed tr[data-contact-id='while-paused']").await;

    // The sound for HIGH contacts is the operator's choice, off until ticked, and kept across page loads.
    let sound = browser.wait_for("#high-sound").await;
    assert!(!sound.is_selected().await.unwrap());
    sound.click().await.unwrap();
    browser.client.refresh().await.unwrap();
    assert!(browser.wait_for("#high-sound").await.is_selected().await.unwrap(), "the choice is kept");

    // The dashboard draws its charts itself (SVG): nothing from elsewhere.
    browser.client.goto(&format!("{console}/dashboard")).await.unwrap();
    browser.wait_for("#hourly-chart rect").await;
    let regions = browser.wait_for("#regions").await.text().await.unwrap();
    assert!(regions.contains("ntt.kupang"), "{regions}");
    browser.wait_for("#drift-chart").await;
    // Live quality: one labelled contact is far too few to measure, and the chart says so rather than draw a bar.
    let quality = browser.wait_for("#quality-chart").await.text().await.unwrap();
    assert!(quality.contains("minggu · juara") && quality.contains("minggu · aturan naif"), "{quality}");
    assert!(quality.contains("(n="), "{quality}");
    browser.screenshot("console-dashboard.png").await;
    browser.assert_no_external_requests().await;

    // The legal view is not for operators.
    browser.client.goto(&format!("{console}/legal")).await.unwrap();
    browser.wait_for("#forbidden").await;
    assert!(browser.client.find(Locator::Css("table.queue")).await.is_err());
    browser.client.goto(&format!("{console}/legal/cases/anything")).await.unwrap();
    browser.wait_for("#forbidden").await;

    // In English on request: the badge's word, the reasons, the dispositions, the controls.
    browser.client.goto(&format!("{console}/lang/en?back=/operator")).await.unwrap();
    browser.wait_for("#feed[data-connected='1']").await;
    let contact = sample_contact("console-contact-en", Some("081234567001"));
    let reply = routing.score_contact(contact.clone()).await.unwrap().into_inner();
    let row = browser.wait_for("#feed tr[data-contact-id='console-contact-en']").await;
    assert_row_shows(&row, &reply, "en").await;
    assert_reasons_shown(&row, &reply).await;
    let option = browser.client.find(Locator::Css("#disposition option[value='prank']")).await.unwrap();
    assert_eq!(option.html(true).await.unwrap(), "prank");
    assert_eq!(browser.wait_for("#pause").await.text().await.unwrap(), "Pause");

    // Every page is served with a policy that forbids loading anything from elsewhere.
    let head = http_get(&console, "/login");
    assert!(head.contains("content-security-policy: default-src 'self'"), "{head}");
    let unauthenticated = http_get(&console, "/operator");
    assert!(unauthenticated.starts_with("HTTP/1.1 303"), "{unauthenticated}");

    browser.close().await;
    drop((routing, operator_grpc, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    assert!(
        !log.iter().any(|line| line.contains("081234567001") || line.contains("6281234567001")),
        "no number in the log"
    );
    assert!(!log.iter().any(|line| line.contains(&token(Role::Operator))), "no token in the log");
}

#[tokio::test]
async fn a_legal_reviewer_approves_a_case_the_audit_shows_it_and_a_lost_race_shows_the_other_decision() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let mut dispatch = escalations(&channel, Bearer::of(Role::Dispatch));
    let mut legal_grpc = escalations(&channel, Bearer::of(Role::Legal));
    let number = "+6281234567002";

    // Two pranks: an automatic warning; delivered; another prank proposes a virtual-police message.
    prank(&mut routing, "legal-c1", number, 3.0).await;
    let warning = prank(&mut routing, "legal-c2", number, 2.9).await.open_case.unwrap();
    deliver(&mut dispatch, &warning).await;
    let message = prank(&mut routing, "legal-c3", number, 0.0).await.open_case.unwrap();
    assert_eq!(proto::CaseState::try_from(message.state).unwrap(), proto::CaseState::Proposed);

    let browser = Browser::start().await;
    browser.sign_in(&console, Role::Legal).await;
    let link = browser.wait_for(&format!("table.queue a[href='/legal/cases/{}']", message.case_id)).await;
    link.click().await.unwrap();
    let shown = browser.wait_for("#caller-number").await.text().await.unwrap();
    assert_eq!(shown, number, "the legal view shows the raw number");
    browser.screenshot("console-legal.png").await;
    browser
        .client
        .find(Locator::Id("decide-reason"))
        .await
        .unwrap()
        .send_keys("confirmed on the recordings")
        .await
        .unwrap();
    browser.client.find(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    browser.wait_for("#notice.notice").await;
    assert_eq!(browser.wait_for("#case-state").await.text().await.unwrap(), "disetujui");
    let facts = browser.wait_for("table.facts").await.text().await.unwrap();
    assert!(facts.contains("pesan Polisi Virtual: 1 dari [iseng, kasar]"), "the rule in Indonesian: {facts}");
    let timeline = browser.wait_for("table.timeline").await.text().await.unwrap();
    assert!(timeline.contains("iseng") && timeline.contains("telepon"), "{timeline}");
    let approved = browser.wait_for("#audit tr.audit-approved").await.text().await.unwrap();
    assert!(approved.contains("test-legal") && approved.contains("confirmed on the recordings"), "{approved}");
    assert!(browser.client.find(Locator::Css("#audit tr.audit-evidence_read")).await.is_ok(), "reads are audited");
    browser.assert_no_external_requests().await;

    // The message is delivered; one more prank proposes a legal referral. The reviewer opens it, but another
    // reviewer rejects it first over gRPC: the console refuses the stale approval and shows the other decision.
    let approved_case = legal_grpc
        .list(proto::ListCasesRequest { states: vec![proto::CaseState::Approved as i32], ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .cases
        .remove(0);
    deliver(&mut dispatch, &approved_case).await;
    let referral = prank(&mut routing, "legal-c4", number, 0.0).await.open_case.unwrap();
    assert_eq!(proto::Rung::try_from(referral.rung).unwrap(), proto::Rung::LegalReferral);
    browser.client.goto(&format!("{console}/legal/cases/{}", referral.case_id)).await.unwrap();
    browser.wait_for("#approve").await;
    decide(&mut legal_grpc, &referral, proto::Decision::Reject, "not enough: one call").await.unwrap();
    browser.client.find(Locator::Id("decide-reason")).await.unwrap().send_keys("referral is warranted").await.unwrap();
    browser.client.find(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    let notice = browser.wait_for("#notice.error").await.text().await.unwrap();
    assert!(notice.contains("ditolak") && notice.contains("test-legal"), "{notice}");
    assert_eq!(browser.wait_for("#case-state").await.text().await.unwrap(), "ditolak");

    // In English on request; the queue filters by state.
    browser.client.goto(&format!("{console}/lang/en?back=/legal%3Fstate%3Drejected")).await.unwrap();
    browser.wait_for("table.queue").await;
    let heading = browser.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, "Escalation queue");
    let rows = browser.client.find_all(Locator::Css("tr.case-row")).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.unwrap();
    assert!(row.contains("rejected") && row.contains("legal referral"), "{row}");

    browser.close().await;
    drop((routing, dispatch, legal_grpc, channel));
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
}

/// Why a case went to a reviewer instead of being approved automatically, or to welfare instead of a warning, is on
/// its page in the page's language.
#[tokio::test]
async fn the_case_page_says_why_a_case_went_to_a_reviewer_or_to_welfare() {
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));

    // A genuine emergency, then two pranks: the warning waits for a reviewer.
    let reviewed = "+6281234567011";
    call(&mut routing, "why-e1", reviewed, 5.0, proto::Disposition::GenuineEmergency).await;
    prank(&mut routing, "why-p1", reviewed, 3.0).await;
    let warning = prank(&mut routing, "why-p2", reviewed, 2.0).await.open_case.unwrap();
    assert_eq!(proto::Rung::try_from(warning.rung).unwrap(), proto::Rung::Warning);
    assert!(!warning.automatic, "{warning:?}");
    assert_eq!(proto::CaseState::try_from(warning.state).unwrap(), proto::CaseState::Proposed);

    // Six silent or non-emergency calls, then two labelled prank: welfare instead of a warning.
    let distressed = "+6281234567012";
    for index in 0..6 {
        let disposition = if index % 2 == 0 { proto::Disposition::Silent } else { proto::Disposition::NonEmergency };
        call(&mut routing, &format!("why-d{index}"), distressed, 6.0 - f64::from(index) * 0.5, disposition).await;
    }
    prank(&mut routing, "why-d6", distressed, 2.0).await;
    let welfare = prank(&mut routing, "why-d7", distressed, 1.0).await.open_case.unwrap();
    assert_eq!(proto::Rung::try_from(welfare.rung).unwrap(), proto::Rung::WelfareReferral);

    let browser = Browser::start().await;
    browser.sign_in(&console, Role::Legal).await;
    browser.client.goto(&format!("{console}/legal/cases/{}", warning.case_id)).await.unwrap();
    let facts = browser.wait_for("table.facts").await.text().await.unwrap();
    assert!(
        facts.contains("teguran: 2 dari [iseng, kasar] dalam 30 hari")
            && facts.contains("ke peninjau, bukan otomatis: 1 keadaan darurat sungguhan dalam 30 hari"),
        "{facts}"
    );
    browser.client.goto(&format!("{console}/legal/cases/{}", welfare.case_id)).await.unwrap();
    let facts = browser.wait_for("table.facts").await.text().await.unwrap();
    assert!(
        facts.contains("rujukan kesejahteraan, bukan teguran: penelepon menunjukkan tanda tertekan")
            && facts.contains("6 dari 8 kontak dalam 30 hari"),
        "{facts}"
    );
    browser.client.goto(&format!("{console}/lang/en?back=/legal/cases/{}", welfare.case_id)).await.unwrap();
    let facts = browser.wait_for("table.facts").await.text().await.unwrap();
    assert!(facts.contains("welfare referral instead of warning: the caller shows signs of distress"), "{facts}");
    browser.assert_no_external_requests().await;
    browser.close().await;
    drop((routing, channel));
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
}

/// During a history outage a contact is answered from its own features: the operator's row says so — hatched,
/// with why, in the page's language — instead of looking like an ordinary score.
#[tokio::test]
async fn a_degraded_answer_is_shown_as_degraded_on_the_operators_row() {
    let journal =
        std::env::temp_dir().join(unique_prefix("console-journal").replace(':', "-")).join("outcomes.journal");
    // A Redis that is not there: its port is held closed for the whole test.
    let closed = ClosedPort::new();
    let store = format!("redis://127.0.0.1:{}/0", closed.port);
    let saring = SaringProcess::spawn(
        &["--history", &store],
        &[
            ("SARING__PRIVACY__HASH_SECRET", "console-degraded-secret-0123456789"),
            ("SARING__HISTORY__JOURNAL_PATH", journal.to_str().unwrap()),
        ],
    );
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let browser = Browser::start().await;
    browser.sign_in(&console, Role::Operator).await;
    browser.wait_for("#feed[data-connected='1']").await;
    let reply = routing.score_contact(sample_contact("outage-row", Some("081234567044"))).await.unwrap().into_inner();
    assert!(reply.degraded, "{reply:?}");
    let row = browser.wait_for("#feed tr.row-degraded[data-contact-id='outage-row']").await;
    let badge = row.find(Locator::Css(".badge")).await.unwrap();
    assert!(badge.attr("class").await.unwrap().unwrap().contains("degraded"));
    let note = row.find(Locator::Css(".degraded-note")).await.unwrap().text().await.unwrap();
    assert!(note.starts_with("⚠ riwayat tidak"), "{note}");
    assert!(!row.attr("class").await.unwrap().unwrap().contains("alert"), "a degraded answer does not alarm");
    browser.close().await;
    drop((routing, channel));
    let (clean, _) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
}

#[tokio::test]
async fn watch_scores_streams_each_scored_contact_of_the_wanted_region_without_the_number() {
    let harness = crate::common::start().await;
    let mut operator = harness.screening(Role::Operator);
    let mut stream = operator
        .watch_scores(proto::WatchScoresRequest {
            region: Some("ntt.".into()),
            language: proto::Language::Indonesian as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut routing = harness.screening(Role::Routing);
    let elsewhere = proto::ContactRequest { region: "dki.jakarta".into(), ..sample_contact("w-jakarta", None) };
    routing.score_contact(elsewhere).await.unwrap();
    // Both ask for Indonesian: the watcher reads the same reply, its sentences included.
    let kupang = proto::ContactRequest {
        language: proto::Language::Indonesian as i32,
        ..sample_contact("w-kupang", Some("081234567009"))
    };
    let reply = routing.score_contact(kupang).await.unwrap().into_inner();
    assert!(
        reply.reasons.iter().any(|reason| reason.sentence == "kontak pertama dari nomor ini"),
        "{:?}",
        reply.reasons
    );
    let event = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(event.contact_id, "w-kupang", "the Jakarta contact is filtered out");
    assert_eq!(event.region, "ntt.kupang");
    assert!(!event.withheld);
    assert_eq!(event.skipped, 0);
    assert_eq!(event.score.unwrap(), reply);
    let bad = operator
        .watch_scores(proto::WatchScoresRequest { region: Some("NTT!".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let bad = operator.watch_scores(proto::WatchScoresRequest { region: None, language: 7 }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "a language that is not one");
    drop(stream);
    harness.server.stop().await.unwrap();
}

/// One raw HTTP/1.1 form POST with `origin`: the response head and body as text.
fn http_post_form(console: &str, path: &str, origin: &str, form: &str) -> String {
    let address = console.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nOrigin: {origin}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn sign_in_is_for_console_roles_from_the_consoles_own_origin_with_a_host_only_secure_cookie_behind_https() {
    let saring =
        SaringProcess::spawn_configured("[console]\npublic_url = \"https://console.polda.example\"\n", &[], &[]);
    let console = saring.console_url();
    let public = "https://console.polda.example";
    let form = |role: Role| format!("token={}", crate::common::token(role));
    // Routing works through the gRPC API: no session that would only meet 403s.
    let refused = http_post_form(&console, "/login", public, &form(Role::Routing));
    assert!(refused.starts_with("HTTP/1.1 403"), "routing: {refused}");
    assert!(!refused.to_ascii_lowercase().contains("set-cookie"), "{refused}");
    // The scheme is part of the origin: the proxy's host over plain HTTP is refused.
    let cross = http_post_form(&console, "/login", "http://console.polda.example", &form(Role::Operator));
    assert!(!cross.starts_with("HTTP/1.1 303"), "{cross}");
    assert!(!cross.to_ascii_lowercase().contains("set-cookie"), "{cross}");
    let signed_in = http_post_form(&console, "/login", public, &form(Role::Operator));
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("__Host-saring_session=") && cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}

impl Browser {
    async fn sign_out(&self) {
        self.client.find(Locator::Id("sign-out")).await.unwrap().click().await.unwrap();
        self.wait_for("#token").await;
    }

    /// The operator records `disposition` for a contact in the live feed.
    async fn record(&self, contact_id: &str, disposition: &str) {
        let row = self.wait_for(&format!("#feed tr[data-contact-id='{contact_id}']")).await;
        row.click().await.unwrap();
        self.wait_for(&format!("#history[data-contact-id='{contact_id}']")).await;
        let option = format!("#disposition option[value='{disposition}']");
        self.client.find(Locator::Css(&option)).await.unwrap().click().await.unwrap();
        self.client.find(Locator::Id("record")).await.unwrap().click().await.unwrap();
        self.wait_for(&format!("#record-result.ok[data-contact-id='{contact_id}']")).await;
    }

    /// Dispatch claims `case_id` from the deliveries list, reads the number, and records the delivery.
    async fn claim_and_deliver(&self, console: &str, case_id: &str, channel: &str, note: &str) -> String {
        self.client.goto(&format!("{console}/dispatch")).await.unwrap();
        let claim = self.wait_for(&format!("tr.delivery-row[data-case='{case_id}'] .claim-button")).await;
        claim.click().await.unwrap();
        let number = self.wait_for("#claimed-number").await.text().await.unwrap();
        let option = format!("#delivery-channel option[value='{channel}']");
        self.client.find(Locator::Css(&option)).await.unwrap().click().await.unwrap();
        self.client.find(Locator::Id("delivery-note")).await.unwrap().send_keys(note).await.unwrap();
        self.client.find(Locator::Id("deliver")).await.unwrap().click().await.unwrap();
        self.wait_for("#notice.notice").await;
        number
    }
}

/// The whole ladder carried out in the consoles, in Indonesian by default: the routing engine scores, the
/// operator labels two pranks (a warning, approved automatically by policy), dispatch claims it (the number shown
/// once) and delivers it by WhatsApp, the operator labels one more contact silent and corrects it to prank (a
/// virtual-police message, the correction shown on the case's timeline), a reviewer
/// finds it in the inbox with the previous delivery on the page and approves it, dispatch delivers it by SMS, and
/// the reviewer sees the delivery on the case and exports the case file. Walked once in each language.
#[tokio::test]
async fn the_ladder_is_carried_out_end_to_end_in_the_consoles() {
    walk_the_ladder(false).await;
}

#[tokio::test]
async fn the_ladder_is_carried_out_end_to_end_in_the_consoles_in_english() {
    walk_the_ladder(true).await;
}

async fn walk_the_ladder(english: bool) {
    // The words a person reads, in the walk's language.
    let t = |indonesian: &'static str, in_english: &'static str| if english { in_english } else { indonesian };
    let saring = SaringProcess::spawn(&[], &[]);
    let console = saring.console_url();
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    let mut legal_grpc = escalations(&channel, Bearer::of(Role::Legal));
    let number = "081234567050";
    let browser = Browser::start().await;
    if english {
        // The language is the browser's choice (a cookie), kept across sign-ins.
        browser.client.goto(&format!("{console}/lang/en?back=/login")).await.unwrap();
        browser.wait_for("#token").await;
    }

    // The operator labels two pranks from one number: a warning, approved by policy.
    browser.sign_in(&console, Role::Operator).await;
    browser.wait_for("#feed[data-connected='1']").await;
    let heading = browser.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, t("Kontak masuk", "Incoming contacts"), "Indonesian by default, English on request");
    for contact_id in ["ladder-1", "ladder-2"] {
        routing.score_contact(sample_contact(contact_id, Some(number))).await.unwrap();
        browser.record(contact_id, "prank").await;
    }
    let approved = legal_grpc
        .list(proto::ListCasesRequest { states: vec![proto::CaseState::Approved as i32], ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(approved.len(), 1);
    let warning = &approved[0];
    assert!(warning.automatic && warning.rung == proto::Rung::Warning as i32);
    browser.sign_out().await;

    // Dispatch claims the warning (the only place it learns the number) and delivers it by WhatsApp.
    browser.sign_in(&console, Role::Dispatch).await;
    browser.wait_for("#deliveries").await;
    let heading = browser.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, t("Kasus disetujui menunggu pengiriman", "Approved cases awaiting delivery"));
    let listed = browser.wait_for("#deliveries").await.text().await.unwrap();
    assert!(!listed.contains("567050"), "no number before the claim: {listed}");
    let shown = browser.claim_and_deliver(&console, &warning.case_id, "whatsapp", "WA ref teguran-1").await;
    assert_eq!(shown, "+6281234567050");
    let notice = browser.wait_for("#notice").await.text().await.unwrap();
    assert_eq!(notice, t("Pengiriman tercatat.", "Delivery recorded."));
    browser.wait_for("#no-deliveries").await;
    if !english {
        browser.screenshot("console-dispatch.png").await;
    }
    browser.assert_no_external_requests().await;
    browser.sign_out().await;

    // One more prank after the delivered warning: a virtual-police message, for a reviewer.
    browser.sign_in(&console, Role::Operator).await;
    browser.wait_for("#feed[data-connected='1']").await;
    // Received after the delivery (sample contacts are dated a minute ago).
    let after_delivery = proto::ContactRequest {
        received_at: Some(crate::common::timestamp(time::OffsetDateTime::now_utc())),
        ..sample_contact("ladder-3", Some(number))
    };
    routing.score_contact(after_delivery).await.unwrap();
    // First labelled SILENT by mistake, then corrected to PRANK with a reason: the correction proposes the message.
    browser.record("ladder-3", "silent").await;
    browser.client.find(Locator::Css("#disposition option[value='prank']")).await.unwrap().click().await.unwrap();
    browser.client.find(Locator::Id("record")).await.unwrap().click().await.unwrap();
    browser.wait_for("#record-result.error[data-contact-id='ladder-3']").await;
    browser.wait_for("#correction:not(.hidden)").await;
    let reason = "penelepon tertawa lalu menutup telepon";
    browser.client.find(Locator::Id("correction-reason")).await.unwrap().send_keys(reason).await.unwrap();
    browser.client.find(Locator::Id("correct")).await.unwrap().click().await.unwrap();
    browser.wait_for("#correction-result.ok[data-contact-id='ladder-3']").await;
    browser.sign_out().await;

    // The reviewer's inbox holds it; the case page shows the warning's delivery and the contact ids.
    browser.sign_in(&console, Role::Legal).await;
    let inbox = browser.wait_for("#inbox").await;
    let link = inbox.find(Locator::Css("a")).await.unwrap();
    let case_path = link.attr("href").await.unwrap().unwrap();
    link.click().await.unwrap();
    let other = browser.wait_for("#other-cases").await.text().await.unwrap();
    assert!(
        other.contains(&warning.case_id) && other.contains("WhatsApp") && other.contains("WA ref teguran-1"),
        "{other}"
    );
    let timeline = browser.wait_for("#timeline").await.text().await.unwrap();
    assert!(["ladder-1", "ladder-2", "ladder-3"].iter().all(|id| timeline.contains(id)), "{timeline}");
    let correction = browser.wait_for("#timeline .correction").await.text().await.unwrap();
    assert!(correction.contains("penelepon tertawa") && correction.contains("test-operator"), "{correction}");
    browser
        .client
        .find(Locator::Id("decide-reason"))
        .await
        .unwrap()
        .send_keys("iseng lagi setelah teguran")
        .await
        .unwrap();
    browser.client.find(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    browser.wait_for("#notice.notice").await;
    let delivery = browser.wait_for("#case-delivery").await.text().await.unwrap();
    assert_eq!(delivery, t("belum dikirim", "not delivered yet"));
    browser.sign_out().await;

    // Dispatch delivers the message by SMS.
    browser.sign_in(&console, Role::Dispatch).await;
    let message_id = case_path.trim_start_matches("/legal/cases/").to_owned();
    browser.claim_and_deliver(&console, &message_id, "sms", "SMS Polisi Virtual ref 77").await;
    browser.sign_out().await;

    // The reviewer sees the delivery on the case; the case file for a referral holds it all, and prints.
    browser.sign_in(&console, Role::Legal).await;
    browser.wait_for("#inbox-empty").await;
    browser.client.goto(&format!("{console}{case_path}")).await.unwrap();
    let delivery = browser.wait_for("#case-delivery").await.text().await.unwrap();
    assert!(delivery.contains("SMS") && delivery.contains("SMS Polisi Virtual ref 77"), "{delivery}");
    let claim = browser.wait_for("#case-claim").await.text().await.unwrap();
    assert!(claim.contains("test-dispatch"), "{claim}");
    browser.wait_for("#audit tr.audit-claimed").await;
    let audit = browser.wait_for("#audit").await.text().await.unwrap();
    let claimed = t("diklaim untuk pengiriman", "claimed for delivery");
    assert!(audit.contains(claimed) && audit.contains("test-dispatch"), "{audit}");
    browser.wait_for("#audit tr.audit-actioned").await;
    // Evidence reads are audited once per reviewer, case and session: the first session's page views (open,
    // approve, the page after it) are one entry, this session's view another.
    browser.client.refresh().await.unwrap();
    browser.wait_for("#audit").await;
    let reads = browser.client.find_all(Locator::Css("#audit tr.audit-evidence_read")).await.unwrap();
    assert_eq!(reads.len(), 2);
    browser.client.find(Locator::Id("case-file")).await.unwrap().click().await.unwrap();
    browser.wait_for("#case-file-page").await;
    assert_eq!(browser.wait_for("#caller-number").await.text().await.unwrap(), "+6281234567050");
    browser.wait_for("#print").await;
    if !english {
        browser.screenshot("console-case-file.png").await;
    }
    browser.assert_no_external_requests().await;
    browser.sign_out().await;

    browser.close().await;
    drop((routing, legal_grpc, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    assert!(!log.iter().any(|line| line.contains("567050")), "no number in the log");
}

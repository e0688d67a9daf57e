//! The web console: operators' live feed with risk badges and dispositions, the legal team's escalation queue and
//! case pages, and a dashboard — served by saring itself on the admin HTTP port (axum). Every page calls the same
//! transport-free core the gRPC handlers call (`App`, `Screener`, `Escalator`); there is no second copy of logic.
//!
//! Sign-in exchanges a role token of the gRPC API for a session cookie (HttpOnly, SameSite=Strict); every POST
//! carries the session's CSRF token and, when the browser sends one, an Origin matching the console's host. Pages
//! load nothing from elsewhere: a strict Content-Security-Policy (`default-src 'self'`) backs that up.

mod correction;
mod dashboard;
mod dispatch;
pub mod i18n;
mod legal;
mod operator;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use tokio::net::TcpListener;

use self::i18n::Lang;
use self::session::{cookie, same_secret, Session, Sessions, LANG_COOKIE, SESSION_COOKIE, SESSION_LIFETIME};
use crate::app::App;
use crate::auth::Role;
use crate::failed_auth::Door;
use crate::store::HistoryStore;

/// The console's shared state.
pub struct Console<S> {
    app: Arc<App<S>>,
    sessions: Sessions,
    options: AdminOptions,
}

/// What the admin port serves besides the console pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// Serve the console's pages (`console.enabled`).
    pub pages: bool,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
    /// How often a scrape may start a full verification of the audit chain.
    pub audit_verify_interval: std::time::Duration,
    /// The origin browsers reach the console at (`console.public_url`, e.g. `https://console.example`) when a
    /// proxy stands in front of it; `None`: `http://` and the request's Host. With `https`, the session cookie is
    /// `__Host-` prefixed and `Secure`.
    pub public_origin: Option<String>,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            pages: true,
            metrics: true,
            audit_verify_interval: std::time::Duration::from_secs(300),
            public_origin: None,
        }
    }
}

/// The roles with console pages; routing works through the gRPC API only.
const CONSOLE_ROLES: [Role; 4] = [Role::Operator, Role::Legal, Role::Dispatch, Role::Admin];

type Shared<S> = State<Arc<Console<S>>>;

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// The console's routes over `app`, and `/metrics` when `options` say so.
pub fn router<S: HistoryStore + 'static>(app: Arc<App<S>>, options: AdminOptions) -> Router {
    let (metrics_on, pages_on) = (options.metrics, options.pages);
    let console = Arc::new(Console { app, sessions: Sessions::default(), options });
    let mut router = Router::new();
    if metrics_on {
        router = router.route("/metrics", get(metrics::<S>));
    }
    if pages_on {
        router = router.merge(pages::<S>());
    }
    router.layer(axum::middleware::map_response(secure_headers)).with_state(console)
}

fn pages<S: HistoryStore + 'static>() -> Router<Arc<Console<S>>> {
    Router::new()
        .route("/", get(home::<S>))
        .route("/login", get(login_page).post(login::<S>))
        .route("/logout", post(logout::<S>))
        .route("/lang/{code}", get(language))
        .route("/static/console.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/static/console.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/operator", get(operator::page::<S>))
        .route("/operator/feed", get(operator::feed::<S>))
        .route("/operator/contacts/{contact_id}", get(operator::contact::<S>))
        .route("/operator/contacts/{contact_id}/outcome", post(operator::outcome::<S>))
        .route("/operator/contacts/{contact_id}/correction", post(correction::correct::<S>))
        .route("/legal", get(legal::queue::<S>))
        .route("/legal/cases/{case_id}", get(legal::case_page::<S>))
        .route("/legal/cases/{case_id}/file", get(legal::case_file::<S>))
        .route("/legal/cases/{case_id}/decide", post(legal::decide::<S>))
        .route("/legal/cases/{case_id}/revert", post(legal::revert::<S>))
        .route("/dispatch", get(dispatch::list::<S>))
        .route("/dispatch/cases/{case_id}/claim", post(dispatch::claim::<S>))
        .route("/dispatch/cases/{case_id}/deliver", post(dispatch::deliver::<S>))
        .route("/dispatch/cases/{case_id}/release", post(dispatch::release::<S>))
        .route("/dashboard", get(dashboard::page::<S>))
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve<S: HistoryStore + 'static>(
    listener: TcpListener,
    app: Arc<App<S>>,
    options: AdminOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router(app, options).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

/// Prometheus metrics. No session: they carry no personal data (see `docs/metrics.md`), and the admin port is
/// loopback unless configured otherwise.
async fn metrics<S: HistoryStore + 'static>(State(console): Shared<S>) -> Response {
    let app = &console.app;
    let text = app.screener.metrics().render(app, console.options.audit_verify_interval).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")], text).into_response()
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// The language of a request (cookie; Indonesian by default).
fn lang(headers: &HeaderMap) -> Lang {
    let cookies = headers.get(header::COOKIE).and_then(|value| value.to_str().ok()).unwrap_or("");
    Lang::from_code(cookie(cookies, LANG_COOKIE))
}

/// Why a request is not served.
enum Denied {
    /// No session: sign in first.
    SignIn,
    /// A session of a role that may not open this.
    Forbidden(Lang),
    /// The CSRF token or the origin did not match.
    Csrf,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => Redirect::to("/login").into_response(),
            Denied::Forbidden(lang) => {
                let body = html! { p.error #forbidden { (lang.t("forbidden")) } };
                (StatusCode::FORBIDDEN, Html(layout(lang, lang.t("forbidden"), None, body))).into_response()
            }
            Denied::Csrf => (StatusCode::FORBIDDEN, "CSRF check failed: reload the page and try again").into_response(),
        }
    }
}

impl<S> Console<S> {
    /// The session of a request whose role is one of `allowed`.
    fn session(&self, headers: &HeaderMap, allowed: &[Role]) -> Result<Session, Denied> {
        let cookies = headers.get(header::COOKIE).and_then(|value| value.to_str().ok()).unwrap_or("");
        let session =
            cookie(cookies, self.session_cookie()).and_then(|id| self.sessions.get(id)).ok_or(Denied::SignIn)?;
        if allowed.contains(&session.principal.role) {
            Ok(session)
        } else {
            Err(Denied::Forbidden(lang(headers)))
        }
    }

    /// As [`Console::session`], for a state-changing request: the CSRF token (form field or `x-csrf-token`
    /// header) must be the session's, and the Origin, if sent, this host.
    fn session_for_change(
        &self,
        headers: &HeaderMap,
        allowed: &[Role],
        form_token: Option<&str>,
    ) -> Result<Session, Denied> {
        let session = self.session(headers, allowed)?;
        check_origin(headers, self.options.public_origin.as_deref())?;
        let sent = form_token.or_else(|| headers.get("x-csrf-token").and_then(|value| value.to_str().ok()));
        match sent {
            Some(token) if same_secret(token, &session.csrf) => Ok(session),
            _ => Err(Denied::Csrf),
        }
    }
}

impl<S> Console<S> {
    /// Whether browsers reach the console over HTTPS (through a proxy).
    fn secure(&self) -> bool {
        self.options.public_origin.as_deref().is_some_and(|origin| origin.starts_with("https://"))
    }

    /// The session cookie's name: `__Host-` prefixed over HTTPS, so no other host or path can set it.
    fn session_cookie(&self) -> &'static str {
        if self.secure() {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The `Set-Cookie` value for the session `id` (`None`: expire it).
    fn session_set_cookie(&self, id: Option<&str>) -> String {
        let secure = if self.secure() { "; Secure" } else { "" };
        match id {
            Some(id) => format!(
                "{}={id}; HttpOnly{secure}; SameSite=Strict; Path=/; Max-Age={}",
                self.session_cookie(),
                SESSION_LIFETIME.as_secs()
            ),
            None => format!("{}=; HttpOnly{secure}; SameSite=Strict; Path=/; Max-Age=0", self.session_cookie()),
        }
    }
}

/// The session cookie's name over HTTPS.
const SECURE_SESSION_COOKIE: &str = "__Host-saring_session";

/// A sent Origin must be the console's own, scheme included: `public_origin` when configured, else `http://` and
/// the request's Host (the console itself speaks plain HTTP).
fn check_origin(headers: &HeaderMap, public_origin: Option<&str>) -> Result<(), Denied> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else { return Ok(()) };
    let expected = match public_origin {
        Some(public) => public.trim_end_matches('/').to_ascii_lowercase(),
        None => {
            let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
            format!("http://{}", host.to_ascii_lowercase())
        }
    };
    if origin.to_ascii_lowercase() == expected {
        Ok(())
    } else {
        Err(Denied::Csrf)
    }
}

/// A page: header with navigation for the signed-in role, the language switch, then `body`. Everything
/// interpolated is escaped by the template engine (maud); only [`Markup`] already built by it goes in unescaped.
fn layout(lang: Lang, title: &str, session: Option<&Session>, body: Markup) -> String {
    let other = if lang == Lang::Id { "en" } else { "id" };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                title { (title) }
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(session.map_or("", |session| session.csrf.as_str()));
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    strong { "saring" }
                    nav { @if let Some(session) = session { (navigation(lang, session)) } }
                    a.lang #lang href={ "/lang/" (other) } { (lang.t("language")) }
                }
                main { (body) }
                script src="/static/console.js" {}
            }
        }
    }
    .into_string()
}

/// The signed-in role's links, who is signed in, and the sign-out button.
fn navigation(lang: Lang, session: &Session) -> Markup {
    let role = session.principal.role;
    html! {
        @if role == Role::Operator { a href="/operator" { (lang.t("operator_view")) } }
        @if role == Role::Legal { a href="/legal" { (lang.t("legal_view")) } }
        @if role == Role::Dispatch { a href="/dispatch" { (lang.t("dispatch_view")) } }
        a href="/dashboard" { (lang.t("dashboard")) }
        span.who { (session.principal.name) " (" (role.as_str()) ")" }
        form.inline method="post" action="/logout" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" #sign-out { (lang.t("sign_out")) }
        }
    }
}

async fn home<S: HistoryStore>(State(console): Shared<S>, headers: HeaderMap) -> Response {
    match console.session(&headers, &[Role::Operator, Role::Legal, Role::Admin, Role::Routing, Role::Dispatch]) {
        Ok(session) => Redirect::to(match session.principal.role {
            Role::Operator => "/operator",
            Role::Legal => "/legal",
            Role::Dispatch => "/dispatch",
            _ => "/dashboard",
        })
        .into_response(),
        Err(denied) => denied.into_response(),
    }
}

fn login_form(lang: Lang, error: Option<&str>) -> Markup {
    html! {
        h1 { (lang.t("sign_in")) }
        @if let Some(error) = error { p.error #login-error { (error) } }
        form.login method="post" action="/login" {
            label { (lang.t("token")) " " input type="password" name="token" #token autocomplete="off" required; }
            button type="submit" #sign-in { (lang.t("sign_in")) }
        }
    }
}

async fn login_page(headers: HeaderMap) -> Html<String> {
    let lang = lang(&headers);
    Html(layout(lang, lang.t("sign_in"), None, login_form(lang, None)))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = lang(&headers);
    if let Err(denied) = check_origin(&headers, console.options.public_origin.as_deref()) {
        return denied.into_response();
    }
    let failed = console.app.auth.failed_auth();
    let remote = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(remote)| *remote);
    let forwarded = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok());
    let peer = failed.peer(remote, forwarded);
    // A throttled address is not told whether its token is good: it is not looked at.
    if let Err(left) = failed.check(peer, Door::Console) {
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let page = layout(lang, lang.t("sign_in"), None, login_form(lang, Some(lang.t("too_many_failures"))));
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds.to_string())], Html(page))
            .into_response();
    }
    let token = form.token.trim();
    let Some(principal) = console.app.auth.principal(token).cloned() else {
        let credential = if token.is_empty() { "none" } else { "bearer" };
        let presented = (!token.is_empty()).then_some(token.as_bytes());
        failed.record(peer, Door::Console, credential, presented, "unknown token");
        let page = layout(lang, lang.t("sign_in"), None, login_form(lang, Some(lang.t("bad_token"))));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    };
    if !CONSOLE_ROLES.contains(&principal.role) {
        tracing::info!(actor = %principal.name, role = principal.role.as_str(), "console sign-in refused: no console pages for the role");
        let page = layout(lang, lang.t("sign_in"), None, login_form(lang, Some(lang.t("no_console_role"))));
        return (StatusCode::FORBIDDEN, Html(page)).into_response();
    }
    tracing::info!(actor = %principal.name, role = principal.role.as_str(), "console sign-in");
    let id = console.sessions.start(principal);
    ([(header::SET_COOKIE, console.session_set_cookie(Some(&id)))], Redirect::to("/")).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout<S: HistoryStore>(
    State(console): Shared<S>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let all = [Role::Operator, Role::Legal, Role::Admin, Role::Routing, Role::Dispatch];
    if let Err(denied) = console.session_for_change(&headers, &all, Some(&form.csrf)) {
        return denied.into_response();
    }
    let cookies = headers.get(header::COOKIE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if let Some(id) = cookie(cookies, console.session_cookie()) {
        console.sessions.end(id);
    }
    ([(header::SET_COOKIE, console.session_set_cookie(None))], Redirect::to("/login")).into_response()
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

async fn language(Path(code): Path<String>, Query(back): Query<Back>, headers: HeaderMap) -> Response {
    let lang = Lang::from_code(Some(&code));
    let cookie = format!("{LANG_COOKIE}={}; SameSite=Strict; Path=/; Max-Age=31536000", lang.code());
    // Back to the page it came from, on this site only.
    let referer = headers.get(header::REFERER).and_then(|value| value.to_str().ok()).and_then(|referer| {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        referer.split_once(host).map(|(_, path)| path.to_owned())
    });
    let safe = |path: &String| {
        path.starts_with('/')
            && !path.starts_with("//")
            && path.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"/_-.?=&%:".contains(&byte))
    };
    let target = back.back.or(referer).filter(safe);
    ([(header::SET_COOKIE, cookie)], Redirect::to(target.as_deref().unwrap_or("/"))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatever_a_page_interpolates_is_escaped() {
        let hostile = "<script>alert('x')</script>\"&";
        let page = layout(Lang::En, hostile, None, login_form(Lang::En, Some(hostile)));
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("<title>&lt;script&gt;alert('x')&lt;/script&gt;&quot;&amp;</title>"), "{page}");
        assert!(page.contains("<p class=\"error\" id=\"login-error\">&lt;script&gt;"), "{page}");
    }

    #[test]
    fn the_origin_must_be_this_host_when_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_origin(&headers, None).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(check_origin(&headers, None).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(check_origin(&headers, None).is_err());
        // The scheme counts: the same host over another scheme is another origin.
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://127.0.0.1:8080"));
        assert!(check_origin(&headers, None).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&headers, None).is_err());
        // Behind a proxy the configured public origin is the only one, whatever Host the proxy forwards.
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://console.polda.example"));
        assert!(check_origin(&headers, Some("https://console.polda.example/")).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://console.polda.example"));
        assert!(check_origin(&headers, Some("https://console.polda.example")).is_err());
    }
}

//! Waits for SIGTERM or SIGINT.

use std::future::Future;

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C) received after this call. The handlers are installed when it
/// is called, not when the future is first polled: a signal that comes while the service is still starting (before
/// it serves) is kept, and the service shuts down cleanly as soon as it serves, instead of being killed by the
/// signal's default action. Must be called inside the runtime.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let wait = |stream: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match stream {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(interrupt, "SIGINT") => tracing::info!("received SIGINT"),
                () = wait(terminate, "SIGTERM") => tracing::info!("received SIGTERM"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C");
    }
}

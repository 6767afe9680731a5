//! Catching a panic in user code (an outbox handler, a projection's `apply`) or in a
//! background task, with its backtrace: the one implementation every task uses.
//!
//! A panic's backtrace can only be taken while the panic happens, in the panic hook. The
//! first [`CatchPanic`] installs a hook, once, that chains to the one before it (so panics
//! are still printed as before) and captures a backtrace only for panics raised while a
//! future is being polled by a [`CatchPanic`]; every other panic goes through untouched.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Whether this thread is polling a guarded future right now.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// The backtrace of the guarded panic this thread just raised.
    static BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(Cell::get) {
                let backtrace = Backtrace::force_capture().to_string();
                BACKTRACE.with(|slot| *slot.borrow_mut() = Some(backtrace));
            }
            previous(info);
        }));
    });
}

/// A caught panic: its message and backtrace.
#[derive(Debug, Clone)]
pub(crate) struct Panicked {
    pub message: String,
    pub backtrace: Option<String>,
}

/// Polls a future, turning a panic into [`Panicked`].
pub(crate) struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> CatchPanic<F> {
    pub(crate) fn new(inner: F) -> Self {
        install_hook();
        CatchPanic {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A backtrace left by a panic caught inside the future is not this poll's.
        BACKTRACE.with(|slot| slot.borrow_mut().take());
        let was = IN_HANDLER.with(|flag| flag.replace(true));
        let polled = catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx)));
        IN_HANDLER.with(|flag| flag.set(was));
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(Panicked {
                message: panic_message(payload),
                backtrace: BACKTRACE.with(|slot| slot.borrow_mut().take()),
            })),
        }
    }
}

/// A panic's message, when it is a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map(|message| (*message).to_owned())
            .unwrap_or_else(|_| "(not a string)".to_owned()),
    }
}

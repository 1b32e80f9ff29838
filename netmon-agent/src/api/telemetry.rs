//! Serving a collector's latest reading: the reading as JSON, or a 503 that
//! says why there is none (turned off, or the first cycle still running).

use std::sync::Arc;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::error::ApiError;
use crate::collect::{CollectorName, Latest, Reading};

/// The latest reading of collector `name`, or the 503 explaining its absence.
pub fn latest<R>(name: CollectorName, slot: &Latest<R>) -> Result<Arc<Reading<R>>, ApiError> {
    slot.get().ok_or_else(|| {
        ApiError::Unavailable(if slot.disabled() {
            format!("the {name} collector is turned off (--disable {name})")
        } else {
            format!("the {name} collector has not finished its first cycle yet")
        })
    })
}

/// A whole reading as the response body.
pub fn reading_response<R: Serialize>(
    name: CollectorName,
    slot: &Latest<R>,
) -> Result<Response, ApiError> {
    let reading = latest(name, slot)?;
    Ok(Json(&*reading).into_response())
}

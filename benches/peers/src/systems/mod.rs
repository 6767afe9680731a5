//! The peer systems, one module per library, each implementing the workloads' `Bank`.

pub mod cqrs;
pub mod disintegrate;
pub mod esrs;

//! Runs scenarios on targets and compares what they did with the engine.

pub mod corpus;

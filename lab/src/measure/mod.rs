//! The measuring instruments: the open-loop load and its HTTP client, the record of every
//! request and event (which the cluster model and the fronts write into too), and the progress
//! line. What is made of the record is [`crate::report`]'s.

pub mod httpc;
pub mod load;
pub mod progress;
pub mod record;

//! Applying a plan to the machine (DESIGN §5 step 5).

pub(crate) mod sys;

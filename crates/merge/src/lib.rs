//! Model merging (planned, see the README's status table): the study's sparse task-vector merge and
//! mergekit's methods, streamed tensor by tensor through `mmreason-checkpoint`. Empty until its issue lands.

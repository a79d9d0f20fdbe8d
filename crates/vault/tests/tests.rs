mod canary;
mod concurrency;
mod keys;
mod rotation;
mod support;

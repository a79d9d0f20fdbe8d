mod canary;
mod concurrency;
mod keys;
mod support;

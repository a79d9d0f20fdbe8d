mod canary;
mod concurrency;
mod governance;
mod keys;
mod rotation;
mod support;

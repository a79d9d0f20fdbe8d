// Keeping a page's data fresh by polling (decision 0032): `read()` runs again `interval` ms
// after it last answered, for as long as it says something is still running.
//
// Guarantees, and how they are kept:
// - One read at a time: the next one is scheduled only after the last one answered.
// - Nothing is asked while the tab is hidden: a due read waits for the tab to be shown again,
//   and a shown tab reads at once (what changed meanwhile is seen without waiting).
// - Nothing is asked for a page that is gone: the poller stops when its page's root element has
//   left the document (another page, a sign-out) or when `stop()` is called.

/**
 * Starts polling for the page whose root element is `root`: `read()` resolves to true while
 * there is something worth reading again. The first read is the caller's; `wake()` reads now
 * (after the user started or cancelled something).
 */
export function poller(root, read, { interval = 1500 } = {}) {
  let timer = null;
  let reading = false;
  let due = false;
  let stopped = false;

  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    document.removeEventListener('visibilitychange', onVisibility);
  };

  const run = async () => {
    timer = null;
    if (stopped) {
      return;
    }
    if (!root.isConnected) {
      stop();
      return;
    }
    if (document.hidden) {
      due = true;
      return;
    }
    if (reading) {
      due = true;
      return;
    }
    due = false;
    reading = true;
    let again = false;
    try {
      again = await read();
    } finally {
      reading = false;
    }
    if (stopped) {
      return;
    }
    if (due) {
      run();
    } else if (again) {
      timer = setTimeout(run, interval);
    }
  };

  function onVisibility() {
    if (!document.hidden && !stopped) {
      clearTimeout(timer);
      run();
    }
  }
  document.addEventListener('visibilitychange', onVisibility);

  return {
    stop,
    wake() {
      clearTimeout(timer);
      run();
    },
    /** Polls from now on if `again` (the answer of a read made outside the poller). */
    continueIf(again) {
      if (again && !stopped && timer === null && !reading) {
        timer = setTimeout(run, interval);
      }
    },
  };
}

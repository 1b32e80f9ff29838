// Polling the API: a view asks for a path every few seconds and gets the
// last answer, or the error of the last try (the last good answer is kept,
// marked stale). A refused key pauses every poll until a retry or a new
// sign-in; an unreachable agent is retried at each tick.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, connection } from './api.js';
import { useObservable } from './store.js';

/**
 * `GET path` now and every `ms` (no repeat when 0). Returns
 * { data, error, loading }: `error` is an ApiError (an `unavailable` one
 * says why the agent has no such figure).
 */
export function usePoll(path, ms) {
  const conn = useObservable(connection);
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const current = useRef(path);
  current.current = path;
  useEffect(() => {
    if (!path) return undefined;
    let stopped = false;
    let timer = null;
    setState((s) => ({ ...s, loading: true }));
    const tick = async () => {
      if (connection.get().state === 'auth') return;
      try {
        const data = await api(path);
        if (!stopped && current.current === path) setState({ data, error: null, loading: false });
      } catch (error) {
        if (!stopped && current.current === path) setState((s) => ({ ...s, error, loading: false }));
      }
      if (!stopped && ms > 0) timer = setTimeout(tick, ms);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [path, ms, conn.epoch, conn.state === 'auth']);
  return state;
}

/** The current time, refreshed every `ms` (for "3 min ago"). */
export function useNow(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** Whether the system asks for dark colours; follows its changes. */
export function useDark() {
  const query = matchMedia('(prefers-color-scheme: dark)');
  const [dark, setDark] = useState(query.matches);
  useEffect(() => {
    const on = (e) => setDark(e.matches);
    query.addEventListener('change', on);
    return () => query.removeEventListener('change', on);
  }, []);
  return dark;
}

// A tiny observable value and the hook that re-renders on its changes.

import { useEffect, useState } from 'preact/hooks';

export function observable(initial) {
  let value = initial;
  const subs = new Set();
  return {
    get: () => value,
    set(next) {
      value = typeof next === 'function' ? next(value) : next;
      for (const fn of subs) fn(value);
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

export function useObservable(obs) {
  const [value, setValue] = useState(obs.get());
  useEffect(() => {
    setValue(obs.get());
    return obs.subscribe(setValue);
  }, [obs]);
  return value;
}

import { RUN_ERROR_CODES } from '@threadline/contracts';
import { describe, expect, it } from 'vitest';
import { humanise, problemText, runErrorText } from '../src/words.js';

describe('words', () => {
  it('turns tool names into words', () => {
    expect(humanise('profile.patch')).toBe('Profile patch');
    expect(humanise('getWeatherForecast')).toBe('Get weather forecast');
    expect(humanise('booking_create-v2')).toBe('Booking create v2');
    expect(humanise('x')).toBe('X');
  });

  it('has a sentence for every run error code the system writes, and a general one for others', () => {
    const general = runErrorText('a_host_code');
    expect(general).toBe('Something went wrong.');
    for (const code of RUN_ERROR_CODES) {
      const text = runErrorText(code);
      if (code !== 'internal_error') expect(text, code).not.toBe(general);
      expect(text).not.toContain('_');
    }
    expect(problemText('some_future_code')).toBe('Something went wrong.');
    expect(problemText('rate_limited')).toMatch(/too fast/);
    expect(problemText('too_many_runs')).toMatch(/in progress/);
  });
});

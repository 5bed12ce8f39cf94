// The browser tests load React's UMD build (window.React); this module lets
// the built hook's `import ... from 'react'` find it through an import map.
const React = window.React;
export default React;
export const {
  StrictMode, createElement, useEffect, useLayoutEffect, useRef, useState,
} = React;

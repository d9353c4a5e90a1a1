// Loaded before the viewer module: if the viewer's scripts never ran (a browser aborts loads
// when the host's network interfaces change), reload once. The ticket in the fragment is only
// used by the viewer, so it is still good.
setTimeout(() => {
  const status = document.getElementById('status');
  if (status && status.dataset.state === 'loading' && !sessionStorage.getItem('ocaas-desktop-reloaded')) {
    sessionStorage.setItem('ocaas-desktop-reloaded', '1');
    location.reload();
  }
}, 10000);

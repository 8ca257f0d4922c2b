"""Weight-sharing supernets for the search spaces (see ``shared``, ``sampling``, ``model``, ``train``)."""
